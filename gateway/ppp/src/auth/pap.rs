//! PAP (RFC 1334 §2), both roles. Opt-in only: the password crosses the link in clear (inside
//! TLS). The server checks it by hashing it and comparing NT hashes in constant time, so the
//! plaintext is never stored.

use std::time::Instant;

use super::{AuthFailure, AuthMethod, AuthOutcome, ClientAuthOutcome, Hlak, NtHash};
use crate::{
    AddressAllocator, Lookup, Protocol, UserLookup,
    auth::chap::{Verified, lookup_failure},
    config::Timers,
    fsm::Ctx,
    packet::{Code, Packet},
};

/// Authenticator side: waits for an Authenticate-Request and answers Ack or Nak.
#[derive(Debug)]
pub(crate) struct PapServer {
    deadline: Option<Instant>,
    /// The answer we sent, its identifier and message, repeated if the peer retransmits.
    result: Option<(u8, Code, &'static str)>,
}

impl PapServer {
    /// Starts waiting; the peer gets Max-Configure restart periods to send its request (the
    /// authenticator never retransmits in PAP).
    pub(crate) fn start(now: Instant, timers: Timers) -> Self {
        Self {
            deadline: Some(now + timers.restart * timers.max_configure.max(1)),
            result: None,
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Option<AuthOutcome> {
        match self.deadline {
            Some(deadline) if deadline <= now => {
                self.deadline = None;
                Some(AuthOutcome::Failure {
                    username: None,
                    reason: AuthFailure::Timeout,
                })
            }
            _ => None,
        }
    }

    /// Handles a PAP packet from the peer.
    pub(crate) fn handle(
        &mut self,
        cx: &mut Ctx<'_>,
        information: &[u8],
        users: &dyn UserLookup,
        admission: &mut dyn AddressAllocator,
    ) -> Option<AuthOutcome> {
        let packet = Packet::parse(information).ok()?;
        if packet.code != PAP_AUTHENTICATE_REQUEST {
            return None;
        }
        if let Some((id, code, text)) = self.result {
            if id == packet.id {
                send_answer(cx, code, id, text);
            }
            return None;
        }
        self.deadline = None;
        let (outcome, text) = match verify(packet.data, users) {
            Ok(verified) => match admission.allocate(&verified.username) {
                Ok(address) => (verified.admitted(address), SUCCESS_TEXT),
                Err(refusal) => (
                    AuthOutcome::Failure {
                        username: Some(verified.username),
                        reason: refusal.into(),
                    },
                    refusal.message(),
                ),
            },
            Err(outcome) => (outcome, FAILURE_TEXT),
        };
        let code = match outcome {
            AuthOutcome::Success { .. } => PAP_AUTHENTICATE_ACK,
            AuthOutcome::Failure { .. } => PAP_AUTHENTICATE_NAK,
        };
        send_answer(cx, code, packet.id, text);
        self.result = Some((packet.id, code, text));
        Some(outcome)
    }
}

fn verify(data: &[u8], users: &dyn UserLookup) -> Result<Verified, AuthOutcome> {
    let Some((peer_id, password)) = parse_request(data) else {
        return Err(AuthOutcome::Failure {
            username: None,
            reason: AuthFailure::Malformed,
        });
    };
    let username = peer_id.to_owned();
    let reason = match users.lookup(peer_id) {
        Lookup::Found(stored) => {
            if NtHash::from_password(password).ct_eq(&stored) {
                return Ok(Verified {
                    username,
                    method: AuthMethod::Pap,
                    hlak: Hlak::ZERO,
                });
            }
            AuthFailure::BadPassword
        }
        other => lookup_failure(&other),
    };
    Err(AuthOutcome::Failure {
        username: Some(username),
        reason,
    })
}

/// Peer-ID and Password of an Authenticate-Request (RFC 1334 §2.2.1).
fn parse_request(data: &[u8]) -> Option<(&str, &str)> {
    let (&id_len, rest) = data.split_first()?;
    let (peer_id, rest) = rest.split_at_checked(usize::from(id_len))?;
    let (&pw_len, rest) = rest.split_first()?;
    let password = rest.get(..usize::from(pw_len))?;
    Some((
        std::str::from_utf8(peer_id).ok()?,
        std::str::from_utf8(password).ok()?,
    ))
}

fn send_answer(cx: &mut Ctx<'_>, code: Code, id: u8, text: &str) {
    let mut data = Vec::with_capacity(1 + text.len());
    data.push(u8::try_from(text.len()).unwrap_or(0));
    data.extend_from_slice(text.as_bytes());
    cx.out.push(Protocol::PAP, code, id, &data);
}

/// Peer side: sends the Authenticate-Request until answered.
#[derive(Debug)]
pub(crate) struct PapClient {
    id: u8,
    request: Vec<u8>,
    timers: Timers,
    retries_left: u32,
    deadline: Option<Instant>,
}

impl PapClient {
    /// Sends the first Authenticate-Request.
    pub(crate) fn start(cx: &mut Ctx<'_>, username: &str, password: &str, timers: Timers) -> Self {
        let mut request = Vec::with_capacity(2 + username.len() + password.len());
        // RFC 1334 length fields are one octet: longer credentials cannot be sent whole.
        for field in [username.as_bytes(), password.as_bytes()] {
            let field = field.get(..255).unwrap_or(field);
            request.push(u8::try_from(field.len()).unwrap_or(u8::MAX));
            request.extend_from_slice(field);
        }
        let mut this = Self {
            id: (cx.rng.next_u32() & 0xFF) as u8,
            request,
            timers,
            retries_left: timers.max_configure,
            deadline: None,
        };
        this.send(cx);
        this
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    pub(crate) fn handle_timeout(&mut self, cx: &mut Ctx<'_>) -> Option<ClientAuthOutcome> {
        match self.deadline {
            Some(deadline) if deadline <= cx.now => {}
            _ => return None,
        }
        if self.retries_left == 0 {
            self.deadline = None;
            return Some(ClientAuthOutcome::Failure {
                message: "no answer to PAP Authenticate-Request".to_owned(),
            });
        }
        self.send(cx);
        None
    }

    pub(crate) fn handle(&mut self, information: &[u8]) -> Option<ClientAuthOutcome> {
        let packet = Packet::parse(information).ok()?;
        if packet.id != self.id || self.deadline.is_none() {
            return None;
        }
        let message = packet
            .data
            .split_first()
            .and_then(|(&len, rest)| rest.get(..usize::from(len)))
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .unwrap_or_default();
        let outcome = match packet.code {
            PAP_AUTHENTICATE_ACK => ClientAuthOutcome::Success { hlak: Hlak::ZERO },
            PAP_AUTHENTICATE_NAK => ClientAuthOutcome::Failure { message },
            _ => return None,
        };
        self.deadline = None;
        Some(outcome)
    }

    fn send(&mut self, cx: &mut Ctx<'_>) {
        cx.out.push(
            Protocol::PAP,
            PAP_AUTHENTICATE_REQUEST,
            self.id,
            &self.request,
        );
        self.retries_left = self.retries_left.saturating_sub(1);
        self.deadline = Some(cx.now + self.timers.restart);
    }
}

/// PAP codes (RFC 1334 §2.2).
const PAP_AUTHENTICATE_REQUEST: Code = Code(1);
const PAP_AUTHENTICATE_ACK: Code = Code(2);
const PAP_AUTHENTICATE_NAK: Code = Code(3);
const SUCCESS_TEXT: &str = "Login ok";
const FAILURE_TEXT: &str = "Authentication failed";
