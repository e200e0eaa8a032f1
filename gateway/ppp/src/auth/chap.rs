//! The MS-CHAPv2 exchange over CHAP (RFC 1994 packets, RFC 2759 values), both roles.

use std::time::Instant;

use subtle::ConstantTimeEq;

use super::{
    AuthFailure, AuthMethod, AuthOutcome, ClientAuthOutcome, NtHash,
    mschapv2::{self, KeySide},
};
use crate::{
    AddressAllocator, Lookup, Protocol, Refusal, UserLookup,
    config::Timers,
    fsm::Ctx,
    packet::{Code, Packet},
};

/// Authenticator side: sends the Challenge, checks the Response, answers Success or Failure.
#[derive(Debug)]
pub(crate) struct ChapServer {
    id: u8,
    challenge: [u8; 16],
    server_name: String,
    timers: Timers,
    retries_left: u32,
    deadline: Option<Instant>,
    /// The Success/Failure we sent, repeated if the peer re-sends its Response.
    result: Option<(Code, Vec<u8>)>,
}

impl ChapServer {
    /// Starts the exchange by sending a Challenge.
    pub(crate) fn start(cx: &mut Ctx<'_>, server_name: &str, timers: Timers) -> Self {
        let mut challenge = [0u8; 16];
        cx.rng.fill_bytes(&mut challenge);
        let mut this = Self {
            id: (cx.rng.next_u32() & 0xFF) as u8,
            challenge,
            server_name: server_name.to_owned(),
            timers,
            retries_left: timers.max_configure,
            deadline: None,
            result: None,
        };
        this.send_challenge(cx);
        this
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Retransmits the Challenge; gives up after Max-Configure tries (RFC 1994 §4.1).
    pub(crate) fn handle_timeout(&mut self, cx: &mut Ctx<'_>) -> Option<AuthOutcome> {
        match self.deadline {
            Some(deadline) if deadline <= cx.now => {}
            _ => return None,
        }
        if self.retries_left == 0 {
            self.deadline = None;
            return Some(AuthOutcome::Failure {
                username: None,
                reason: AuthFailure::Timeout,
            });
        }
        self.send_challenge(cx);
        None
    }

    /// Handles a CHAP packet from the peer. Verified credentials are then admitted by
    /// `admission`, before Success goes out, so a refusal still reaches the peer as a Failure.
    pub(crate) fn handle(
        &mut self,
        cx: &mut Ctx<'_>,
        information: &[u8],
        users: &dyn UserLookup,
        admission: &mut dyn AddressAllocator,
    ) -> Option<AuthOutcome> {
        let packet = Packet::parse(information).ok()?;
        if packet.code != CHAP_RESPONSE || packet.id != self.id {
            return None;
        }
        if let Some((code, message)) = &self.result {
            // Our answer crossed a retransmitted Response: repeat it.
            cx.out.push(Protocol::CHAP, *code, self.id, message);
            return None;
        }
        self.deadline = None;
        let (outcome, message) = match self.verify(&packet, users) {
            Ok((verified, proof)) => match admission.allocate(&verified.username) {
                Ok(address) => (
                    verified.admitted(address),
                    format!("{proof} M={SUCCESS_TEXT}"),
                ),
                Err(refusal) => (
                    failure(verified.username, refusal.into()),
                    refusal_message(cx, refusal),
                ),
            },
            Err(outcome) => (outcome, self.failure_message(cx)),
        };
        let code = match outcome {
            AuthOutcome::Success { .. } => CHAP_SUCCESS,
            AuthOutcome::Failure { .. } => CHAP_FAILURE,
        };
        cx.out
            .push(Protocol::CHAP, code, self.id, message.as_bytes());
        self.result = Some((code, message.into_bytes()));
        Some(outcome)
    }

    /// Checks the Response; on success also returns the "S=..." proof (RFC 2759 §5).
    fn verify(
        &self,
        packet: &Packet<'_>,
        users: &dyn UserLookup,
    ) -> Result<(Verified, String), AuthOutcome> {
        let Some(response) = Response::parse(packet.data) else {
            return Err(AuthOutcome::Failure {
                username: None,
                reason: AuthFailure::Malformed,
            });
        };
        let username = mschapv2::strip_domain(response.name).to_owned();
        let hash = match users.lookup(&username) {
            Lookup::Found(hash) => hash,
            other => return Err(failure(username, lookup_failure(&other))),
        };
        let expected = mschapv2::generate_nt_response(
            &self.challenge,
            &response.peer_challenge,
            &username,
            &hash,
        );
        if !bool::from(expected.ct_eq(&response.nt_response)) {
            return Err(failure(username, AuthFailure::BadPassword));
        }
        let proof = mschapv2::generate_authenticator_response(
            &hash,
            &response.nt_response,
            &response.peer_challenge,
            &self.challenge,
            &username,
        );
        let hlak = mschapv2::hlak(&hash, &response.nt_response, KeySide::Server);
        let verified = Verified {
            username,
            method: AuthMethod::MsChapV2,
            hlak,
        };
        Ok((verified, mschapv2::format_authenticator_response(&proof)))
    }

    /// "E=691 R=0 C=<new challenge> V=3 M=<text>" (RFC 2759 §6): no retry is offered, and
    /// every credential failure looks the same to the peer.
    fn failure_message(&self, cx: &mut Ctx<'_>) -> String {
        failure_text(cx, ERROR_AUTHENTICATION_FAILURE, FAILURE_TEXT)
    }

    fn send_challenge(&mut self, cx: &mut Ctx<'_>) {
        let mut data = Vec::with_capacity(1 + 16 + self.server_name.len());
        data.push(CHALLENGE_VALUE_SIZE);
        data.extend_from_slice(&self.challenge);
        data.extend_from_slice(self.server_name.as_bytes());
        cx.out.push(Protocol::CHAP, CHAP_CHALLENGE, self.id, &data);
        self.retries_left = self.retries_left.saturating_sub(1);
        self.deadline = Some(cx.now + self.timers.restart);
    }
}

/// Credentials that checked out, not yet admitted.
pub(crate) struct Verified {
    pub(crate) username: String,
    pub(crate) method: AuthMethod,
    pub(crate) hlak: super::Hlak,
}

impl Verified {
    pub(crate) fn admitted(self, address: std::net::Ipv4Addr) -> AuthOutcome {
        AuthOutcome::Success {
            username: self.username,
            method: self.method,
            hlak: self.hlak,
            address,
        }
    }
}

/// The Failure for a peer whose credentials were right but who is refused anyway:
/// ERROR_NO_DIALIN_PERMISSION, which Windows shows as "the account does not have permission
/// to dial in", plus our reason in `M=` (pppd and sstpc log it).
fn refusal_message(cx: &mut Ctx<'_>, refusal: Refusal) -> String {
    failure_text(cx, ERROR_NO_DIALIN_PERMISSION, refusal.message())
}

/// "E=<code> R=0 C=<new challenge> V=3 M=<text>" (RFC 2759 §6).
fn failure_text(cx: &mut Ctx<'_>, code: u16, text: &str) -> String {
    let mut next_challenge = [0u8; 16];
    cx.rng.fill_bytes(&mut next_challenge);
    format!(
        "E={code} R=0 C={} V=3 M={text}",
        hex::encode_upper(next_challenge)
    )
}

fn failure(username: String, reason: AuthFailure) -> AuthOutcome {
    AuthOutcome::Failure {
        username: Some(username),
        reason,
    }
}

/// Maps a lookup that found no usable hash to the failure it stands for.
pub(crate) fn lookup_failure(lookup: &Lookup) -> AuthFailure {
    match lookup {
        Lookup::Found(_) | Lookup::Unknown => AuthFailure::UnknownUser,
        Lookup::Disabled => AuthFailure::Disabled,
        Lookup::Expired => AuthFailure::Expired,
        Lookup::Throttled => AuthFailure::Throttled,
    }
}

/// The Value and Name of an MS-CHAPv2 Response (RFC 2759 §4).
struct Response<'a> {
    peer_challenge: [u8; 16],
    nt_response: [u8; 24],
    name: &'a str,
}

impl<'a> Response<'a> {
    fn parse(data: &'a [u8]) -> Option<Self> {
        let (&size, rest) = data.split_first()?;
        if size != RESPONSE_VALUE_SIZE {
            return None;
        }
        let (value, name) = rest.split_at_checked(usize::from(RESPONSE_VALUE_SIZE))?;
        let peer_challenge = value.get(..16)?.try_into().ok()?;
        // 8 reserved zero bytes sit between the peer challenge and the NT-Response.
        let nt_response = value.get(24..48)?.try_into().ok()?;
        let name = std::str::from_utf8(name).ok()?;
        Some(Self {
            peer_challenge,
            nt_response,
            name,
        })
    }
}

/// Peer side: answers Challenges and checks the authenticator response in Success.
#[derive(Debug)]
pub(crate) struct ChapClient {
    username: String,
    hash: NtHash,
    /// The challenge we answered, our Response, and what the server must prove.
    answered: Option<Answered>,
    done: bool,
}

#[derive(Debug)]
struct Answered {
    id: u8,
    challenge: [u8; 16],
    response: Vec<u8>,
    nt_response: [u8; 24],
    expected: String,
}

impl ChapClient {
    pub(crate) fn new(username: &str, password: &str) -> Self {
        Self {
            username: username.to_owned(),
            hash: NtHash::from_password(password),
            answered: None,
            done: false,
        }
    }

    /// Handles a CHAP packet from the authenticator.
    pub(crate) fn handle(
        &mut self,
        cx: &mut Ctx<'_>,
        information: &[u8],
    ) -> Option<ClientAuthOutcome> {
        let packet = Packet::parse(information).ok()?;
        if self.done {
            return None;
        }
        match packet.code {
            CHAP_CHALLENGE => {
                self.answer(cx, &packet);
                None
            }
            CHAP_SUCCESS => self.success(&packet),
            CHAP_FAILURE => {
                let answered = self.answered.as_ref()?;
                if answered.id != packet.id {
                    return None;
                }
                self.done = true;
                Some(ClientAuthOutcome::Failure {
                    message: String::from_utf8_lossy(packet.data).into_owned(),
                })
            }
            _ => None,
        }
    }

    fn answer(&mut self, cx: &mut Ctx<'_>, packet: &Packet<'_>) {
        let Some((&CHALLENGE_VALUE_SIZE, rest)) = packet.data.split_first() else {
            return;
        };
        let Some(challenge) = rest.get(..16).and_then(|c| <[u8; 16]>::try_from(c).ok()) else {
            return;
        };
        if let Some(answered) = &self.answered
            && answered.id == packet.id
            && answered.challenge == challenge
        {
            // A retransmitted Challenge: repeat the same Response.
            cx.out
                .push(Protocol::CHAP, CHAP_RESPONSE, packet.id, &answered.response);
            return;
        }
        let mut peer_challenge = [0u8; 16];
        cx.rng.fill_bytes(&mut peer_challenge);
        let user = mschapv2::strip_domain(&self.username);
        let nt_response =
            mschapv2::generate_nt_response(&challenge, &peer_challenge, user, &self.hash);
        let auth = mschapv2::generate_authenticator_response(
            &self.hash,
            &nt_response,
            &peer_challenge,
            &challenge,
            user,
        );
        let mut response = Vec::with_capacity(1 + 49 + self.username.len());
        response.push(RESPONSE_VALUE_SIZE);
        response.extend_from_slice(&peer_challenge);
        response.extend_from_slice(&[0; 8]);
        response.extend_from_slice(&nt_response);
        response.push(0); // Flags
        response.extend_from_slice(self.username.as_bytes());
        cx.out
            .push(Protocol::CHAP, CHAP_RESPONSE, packet.id, &response);
        self.answered = Some(Answered {
            id: packet.id,
            challenge,
            response,
            nt_response,
            expected: mschapv2::format_authenticator_response(&auth),
        });
    }

    fn success(&mut self, packet: &Packet<'_>) -> Option<ClientAuthOutcome> {
        let answered = self.answered.as_ref()?;
        if answered.id != packet.id {
            return None;
        }
        self.done = true;
        let proof = packet
            .data
            .get(..answered.expected.len())
            .unwrap_or_default();
        if !bool::from(proof.ct_eq(answered.expected.as_bytes())) {
            // RFC 2759 §5: the peer MUST verify the server knows the password too.
            return Some(ClientAuthOutcome::Failure {
                message: "authenticator response mismatch".to_owned(),
            });
        }
        let hlak = mschapv2::hlak(&self.hash, &answered.nt_response, KeySide::Client);
        Some(ClientAuthOutcome::Success { hlak })
    }
}

/// CHAP codes (RFC 1994 §4).
const CHAP_CHALLENGE: Code = Code(1);
const CHAP_RESPONSE: Code = Code(2);
const CHAP_SUCCESS: Code = Code(3);
const CHAP_FAILURE: Code = Code(4);
/// MS-CHAPv2 Challenge Value-Size (RFC 2759 §3).
const CHALLENGE_VALUE_SIZE: u8 = 16;
/// MS-CHAPv2 Response Value-Size (RFC 2759 §4).
const RESPONSE_VALUE_SIZE: u8 = 49;
/// ERROR_AUTHENTICATION_FAILURE (RFC 2759 §6).
const ERROR_AUTHENTICATION_FAILURE: u16 = 691;
/// ERROR_NO_DIALIN_PERMISSION (RFC 2759 §6).
const ERROR_NO_DIALIN_PERMISSION: u16 = 649;
const SUCCESS_TEXT: &str = "Access granted";
const FAILURE_TEXT: &str = "Authentication failed";
