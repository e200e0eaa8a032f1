//! One task per SSTP connection, driving [`sstp_proto::ServerConnection`] in a fixed loop:
//! drain events -> forward IP -> queue output -> await one of (socket read, socket write,
//! packet for the client, timer, kick, shutdown).
//!
//! The task owns everything the session holds: its route in the router (registered when IPv4
//! comes up, removed when the task ends), its registration as a user session, and, through the
//! state machine, its pool address. Dropping the task releases all of them.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use sstp_api::UsersDocument;
use sstp_proto::{CertHashes, ServerConnection};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::{Notify, mpsc, watch},
};
use tracing::{Instrument, debug, info, info_span};

use crate::{
    admission::{Admission, AdmissionShared},
    clock::now,
    dataplane::{ClientPacket, TunWriters},
    io_buffers::{RxBuffer, TxBuffer},
    metrics::{ClientDropReason, Direction, Metrics, RejectReason, SessionResult},
    pending::PendingTicket,
    router::Router,
    throttle::AuthThrottle,
    users::SessionLookup,
};

mod audit;
mod events;
mod outcome;
mod phase;
mod table;
#[cfg(test)]
mod tests;
mod tun_wait;

pub use audit::AuditConfig;
use audit::Traffic;
use phase::{Ending, Phase};
pub use table::SessionTable;
use tun_wait::TunWait;

/// What every session shares.
#[derive(Debug)]
pub struct SessionShared {
    /// SSTP/PPP configuration.
    pub sstp: Arc<sstp_proto::ServerConfig>,
    /// The users document in force.
    pub users: watch::Receiver<Arc<UsersDocument>>,
    /// Auth-failure throttle.
    pub throttle: Arc<AuthThrottle>,
    /// Session limits and the address pool, applied when a user is admitted.
    pub admission: AdmissionShared,
    /// Destination address -> session.
    pub router: Arc<Router>,
    /// Packets from clients, to the TUN writers (each session keeps to one).
    pub to_tun: TunWriters,
    /// Metrics.
    pub metrics: Metrics,
    /// Setup deadlines.
    pub deadlines: Deadlines,
    /// End an established session after this long without IP packets either way.
    pub idle_timeout: Option<Duration>,
    /// Becomes true when the gateway shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// What the audit records say about this gateway, and whether they name users.
    pub audit: AuditConfig,
    /// The established sessions, for the admin port's `/sessions`.
    pub sessions: Arc<SessionTable>,
}

/// Deadlines of session setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// From TLS accepted to a complete HTTP preamble.
    pub preamble: Duration,
    /// From the preamble to a tunnel that carries IP.
    pub negotiation: Duration,
    /// How long output may wait unwritten, the client reading nothing, before the connection
    /// is dropped (a client that sends but never reads is held back by backpressure, and this
    /// ends it).
    pub write_stall: Duration,
}

/// Packets queued for one client before the router drops (see [`crate::router`]). An offloading
/// TUN read hands over a super-segment's ~45 packets at once; with 256, one TCP download lost
/// 74,016 packets in 10 s (tests/bench/load), with 1,024 3,098. At most ~1.5 MB per session,
/// held only while its client reads slower than its traffic arrives, and only once logged in
/// (the route exists from IPCP on). tokio allocates the slots as they fill: an idle session
/// holds none.
const ROUTE_QUEUE: usize = 1024;
/// Stop taking packets for the client while this much output is unwritten.
const TX_HIGH_WATER: usize = 256 * 1024;
/// Stop reading the client while this much output is unwritten: whatever it sends (echo
/// requests, frames we must reject), our answers then wait in the client's own socket, not in
/// our memory. Above [`TX_HIGH_WATER`] once established, so a busy download never stalls the
/// client's uploads and ACKs; small before, when no packet for the client exists.
const READ_PAUSE_ESTABLISHED: usize = TX_HIGH_WATER + 256 * 1024;
/// The same before the tunnel is up: setup needs a few hundred bytes at a time.
const READ_PAUSE_SETUP: usize = 32 * 1024;
/// Packets taken from the route queue per loop turn.
const TO_CLIENT_BATCH: usize = 64;
/// Bound on writing the last bytes after the call ended.
const FINAL_WRITE_DEADLINE: Duration = Duration::from_secs(2);

/// Runs one session over an accepted TLS stream until it ends. `pending` is the connection's
/// pre-login place, given up when its user is admitted.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    shared: Arc<SessionShared>,
    stream: S,
    hashes: CertHashes,
    source: SocketAddr,
    accepted: Instant,
    id: u64,
    pending: Option<PendingTicket>,
) {
    let span = info_span!("session", id);
    Session::new(shared, hashes, source, accepted, id, pending)
        .drive(stream)
        .instrument(span)
        .await;
}

struct Session {
    shared: Arc<SessionShared>,
    conn: ServerConnection,
    id: u64,
    source: IpAddr,
    /// The client's address and port (from the PROXY header when a trusted proxy sent one).
    client: SocketAddr,
    /// The name the client authenticated as.
    user: Option<String>,
    accepted: Instant,
    /// Where setup stands, with what exists only there (route, audit record, idle clock).
    phase: Phase,
    kick: Arc<Notify>,
    /// Dropped for reading nothing while output waited (closes as `write_stalled`).
    stalled: bool,
    /// Why we ended the call, when we did and know better than the close reason.
    ended_by_us: Option<&'static str>,
    /// How the connection closed (the `sstp_sessions_closed_total` label).
    close_label: Option<&'static str>,
    /// IP traffic through the tunnel, for the audit record.
    traffic: Traffic,
    /// This session's TUN writer, the same for its whole life (its packets stay in order).
    to_tun: mpsc::Sender<ClientPacket>,
    /// A client packet waiting for room in the TUN writer's queue: until it has some, nothing
    /// more is read from the client (backpressure instead of a drop).
    tun_wait: Option<TunWait>,
}

impl Session {
    fn new(
        shared: Arc<SessionShared>,
        hashes: CertHashes,
        source: SocketAddr,
        accepted: Instant,
        id: u64,
        pending: Option<PendingTicket>,
    ) -> Self {
        let lookup = SessionLookup::new(
            shared.users.clone(),
            Arc::clone(&shared.throttle),
            source.ip(),
        );
        let kick = Arc::new(Notify::new());
        let admission = Admission::new(shared.admission.clone(), id, Arc::clone(&kick), pending);
        let conn = ServerConnection::new(
            Arc::clone(&shared.sstp),
            hashes,
            Arc::new(lookup),
            Box::new(admission),
            Box::new(rand::make_rng::<rand::rngs::StdRng>()),
            accepted,
        );
        let preamble = accepted + shared.deadlines.preamble;
        let to_tun = shared.to_tun.for_session(id);
        Self {
            shared,
            conn,
            id,
            source: source.ip(),
            client: source,
            user: None,
            accepted,
            phase: Phase::Preamble { until: preamble },
            kick,
            stalled: false,
            ended_by_us: None,
            close_label: None,
            traffic: Traffic::default(),
            to_tun,
            tun_wait: None,
        }
    }

    async fn drive<S: AsyncRead + AsyncWrite + Unpin>(mut self, stream: S) {
        debug!(source = %self.source, "session started");
        let (mut reader, mut writer) = tokio::io::split(stream);
        let mut tx = TxBuffer::default();
        let mut rx = RxBuffer::default();
        let mut shutdown = self.shared.shutdown.clone();
        let mut shutting_down = *shutdown.borrow();
        if shutting_down {
            self.conn.disconnect(now());
        }
        // Since when output has waited unwritten: set when output appears, moved on by every
        // write that makes progress, cleared when all is written. The stall deadline runs from
        // it, so output queued after a quiet spell (a hello, a CALL_DISCONNECT) gets the whole
        // stall timeout, not a deadline that passed while there was nothing to write.
        let mut waiting_since: Option<Instant> = None;
        loop {
            // One reading of the clock per turn.
            let turn = now();
            self.drain_events(turn);
            self.forward_from_client(turn);
            self.conn.poll_transmit(tx.buf());
            if self.conn.is_closed() {
                break;
            }
            waiting_since = match (tx.pending(), waiting_since) {
                (0, _) => None,
                (_, Some(since)) => Some(since),
                (_, None) => Some(turn),
            };
            let stall = waiting_since.map(|since| since + self.shared.deadlines.write_stall);
            let deadline = [
                self.conn.poll_timeout(),
                self.phase.deadline(self.shared.idle_timeout),
                stall,
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let take_packets = tx.pending() < TX_HIGH_WATER;
            let read_pause = if self.phase.is_established() {
                READ_PAUSE_ESTABLISHED
            } else {
                READ_PAUSE_SETUP
            };
            let take_input = tx.pending() < read_pause && self.tun_wait.is_none();
            if matches!(self.phase, Phase::Preamble { .. }) {
                // Checked at each read: a place may free up while the request is on its way.
                self.conn.set_busy(self.shared.admission.slots.is_full());
            }
            let to_client = async {
                match self.phase.route_mut() {
                    Some(route) if take_packets => route.queue.recv().await,
                    _ => std::future::pending().await,
                }
            };
            let tun_wait = &mut self.tun_wait;
            let tun_room = async {
                match tun_wait.as_mut() {
                    Some(wait) => wait.room().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                read = reader.read(rx.space()), if take_input => match read {
                    Ok(0) | Err(_) => self.conn.transport_closed(),
                    Ok(n) => self.conn.handle_input(now(), rx.filled(n)),
                },
                written = tx.step(&mut writer), if tx.has_work() => match written {
                    Ok(n) if n > 0 => waiting_since = Some(now()),
                    Ok(_) => {}
                    Err(_) => self.conn.transport_closed(),
                },
                Some(packet) = to_client => self.forward_to_client(packet, now()),
                room = tun_room => {
                    if let Some(wait) = self.tun_wait.take() {
                        let waited = wait.finish(room, now());
                        self.shared.metrics.tun_write_waited(waited);
                    }
                }
                () = sleep => {
                    let now = now();
                    if stall.is_some_and(|at| now >= at) {
                        info!(
                            unwritten = tx.pending(),
                            "the client has read nothing for too long; dropping it"
                        );
                        self.stalled = true;
                        self.conn.transport_closed();
                    } else {
                        self.on_timer(now);
                    }
                }
                () = self.kick.notified() => {
                    info!("user no longer admitted; disconnecting");
                    self.ended_by_us.get_or_insert("user_not_admitted");
                    self.conn.disconnect(now());
                }
                changed = shutdown.changed(), if !shutting_down => {
                    shutting_down = true;
                    if changed.is_ok() {
                        self.ended_by_us.get_or_insert("gateway_shutdown");
                        self.conn.disconnect(now());
                    }
                }
            }
        }
        let _ = tokio::time::timeout(FINAL_WRITE_DEADLINE, async {
            tx.finish(&mut writer).await?;
            let mut stream = reader.unsplit(writer);
            stream.shutdown().await
        })
        .await;
        // Closed always comes before the loop ends, which moves an established session to
        // Ending; Established is matched too so the record closes whatever the order.
        let open = match self.phase {
            Phase::Established(established) => Some(established.open),
            Phase::Ending(Ending::WasEstablished(open)) => Some(open),
            Phase::Preamble { .. } | Phase::Negotiating(_) | Phase::Ending(_) => None,
        };
        if let Some(open) = open {
            self.shared.metrics.session_closed();
            let reason = self
                .ended_by_us
                .or(self.close_label)
                .unwrap_or("transport_closed");
            open.end(&self.shared.audit, self.id, self.traffic, reason);
        }
        debug!("session task ended");
    }

    fn on_timer(&mut self, now: Instant) {
        match &mut self.phase {
            Phase::Preamble { until } if now >= *until => {
                debug!("HTTP preamble deadline passed");
                self.shared
                    .metrics
                    .connection_rejected(RejectReason::PreambleTimeout);
                self.phase = Phase::Ending(Ending::Counted);
                self.conn.transport_closed();
                return;
            }
            Phase::Negotiating(negotiating) if now >= negotiating.until => {
                debug!("negotiation deadline passed");
                // The route, if IPCP got that far, goes now: the call is over.
                self.phase = Phase::Ending(Ending::SetupFailed(SessionResult::Timeout));
                self.conn.disconnect(now);
            }
            Phase::Established(established)
                if !established.idle_fired
                    && self
                        .shared
                        .idle_timeout
                        .is_some_and(|idle| now >= established.last_data + idle) =>
            {
                info!("idle timeout; disconnecting");
                established.idle_fired = true;
                self.ended_by_us.get_or_insert("idle_timeout");
                self.conn.disconnect(now);
            }
            _ => {}
        }
        self.conn.handle_timeout(now);
    }

    /// Client -> TUN: what the state machine's packet policy let out (the client's own source
    /// address only; a DHCPINFORM answered in the tunnel: [`sstp_proto::ip_policy`]).
    /// A packet the TUN writer's queue has no room for stops the loop: it waits in
    /// [`TunWait`], the rest wait in the state machine, and no more is read from the client.
    fn forward_from_client(&mut self, now: Instant) {
        if self.tun_wait.is_some() {
            return;
        }
        let (mut packets, mut bytes) = (0u64, 0u64);
        while let Some(packet) = self.conn.poll_ip() {
            packets += 1;
            bytes += packet.len() as u64;
            match self.to_tun.try_send(ClientPacket::new(packet)) {
                // Closed: the data plane is gone, the gateway is stopping.
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(packet)) => {
                    self.tun_wait = Some(TunWait::new(&self.to_tun, packet, now));
                    break;
                }
            }
        }
        let metrics = &self.shared.metrics;
        if packets > 0 {
            metrics.traffic(Direction::FromClient, packets, bytes);
            self.traffic.packets_from_client += packets;
            self.traffic.bytes_from_client += bytes;
            if let Phase::Established(established) = &mut self.phase {
                established.last_data = now;
                established.open.listed.count_from_client(bytes);
            }
        }
        let kept = self.conn.take_ip_policy();
        for (reason, count) in [(ClientDropReason::ForeignSource, kept.foreign_source)] {
            if count > 0 {
                metrics.client_packets_dropped(reason, count);
            }
        }
    }

    /// TUN -> client: this packet and whatever else is already queued, up to a batch, so a
    /// busy tunnel makes one TLS write per batch instead of one per packet.
    fn forward_to_client(&mut self, first: Bytes, now: Instant) {
        let Some(route) = self.phase.route_mut() else {
            return;
        };
        let (mut packets, mut bytes) = (0u64, 0u64);
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(packet) = next.take() {
            if self.conn.send_ip(&packet).is_ok() {
                packets += 1;
                bytes += packet.len() as u64;
            }
            taken += 1;
            if taken < TO_CLIENT_BATCH {
                next = route.queue.try_recv().ok();
            }
        }
        if packets > 0 {
            self.shared
                .metrics
                .traffic(Direction::ToClient, packets, bytes);
            self.traffic.packets_to_client += packets;
            self.traffic.bytes_to_client += bytes;
            if let Phase::Established(established) = &mut self.phase {
                established.last_data = now;
                established.open.listed.count_to_client(bytes);
            }
        }
    }
}
