//! The client's driver task: one loop that feeds the state machine from the socket, the clock
//! and the handle's commands, and writes what it produces.

use std::time::Duration;

use bytes::Bytes;
use sstp_ppp::dhcp_inform::{Ack, parse_ack};
use sstp_proto::{ClientConnection, ClientEvent, CloseReason, HashProtocol};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite},
    sync::{mpsc, watch},
};

use super::{CallState, Command, Transcript, windows_inform};
use crate::{
    clock::now,
    io_buffers::{RxBuffer, TxBuffer},
};

/// Stop taking packets from the handle while this much output is unwritten (backpressure).
const TX_HIGH_WATER: usize = 256 * 1024;
/// Packets taken from the handle per loop turn.
const SEND_BATCH: usize = 64;
/// How long the last bytes (CALL_DISCONNECT_ACK...) may take to leave once the call is over.
const FINAL_WRITE_DEADLINE: Duration = Duration::from_secs(2);

/// Where the driver reports to the handle.
pub(super) struct Channels {
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) received: mpsc::Sender<Bytes>,
    pub(super) state: watch::Sender<CallState>,
    pub(super) transcript: Transcript,
    /// When a DHCPINFORM is to be sent after IPCP: where its DHCPACK goes.
    pub(super) dhcp: Option<watch::Sender<Option<Ack>>>,
}

/// The DHCPINFORM exchange of a Windows-like client.
struct Inform {
    ack: watch::Sender<Option<Ack>>,
    /// The transaction ID, once the INFORM went out.
    xid: Option<u32>,
}

pub(super) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: ClientConnection,
    stream: S,
    channels: Channels,
) {
    let Channels {
        mut commands,
        received,
        state,
        transcript,
        dhcp,
    } = channels;
    let mut inform = dhcp.map(|ack| Inform { ack, xid: None });
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut tx = TxBuffer::default();
    let mut rx = RxBuffer::default();
    let mut commands_open = true;
    let mut hash = None;
    loop {
        drain(&mut conn, &mut hash, &received, &state, inform.as_mut());
        transcript.extend(conn.take_recorded());
        conn.poll_transmit(tx.buf());
        if conn.is_closed() {
            break;
        }
        let deadline = conn.poll_timeout();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = reader.read(rx.space()) => match read {
                Ok(0) | Err(_) => conn.transport_closed(),
                Ok(n) => conn.handle_input(now(), rx.filled(n)),
            },
            written = tx.step(&mut writer), if tx.has_work() => {
                if written.is_err() {
                    conn.transport_closed();
                }
            }
            command = commands.recv(), if commands_open && tx.pending() < TX_HIGH_WATER => match command {
                Some(Command::Send(packet)) => {
                    // Before the tunnel is up, or when too large: dropped like a NIC would.
                    // Whatever else is queued goes in the same TLS write.
                    let _ = conn.send_ip(&packet);
                    for _ in 1..SEND_BATCH {
                        match commands.try_recv() {
                            Ok(Command::Send(packet)) => {
                                let _ = conn.send_ip(&packet);
                            }
                            Ok(Command::Disconnect) => {
                                conn.disconnect(now());
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                }
                Some(Command::Disconnect) => conn.disconnect(now()),
                None => {
                    commands_open = false;
                    conn.disconnect(now());
                }
            },
            () = sleep => conn.handle_timeout(now()),
        }
    }
    drain(&mut conn, &mut hash, &received, &state, inform.as_mut());
    transcript.extend(conn.take_recorded());
    let _ = tokio::time::timeout(FINAL_WRITE_DEADLINE, tx.finish(&mut writer)).await;
    let mut stream = reader.unsplit(writer);
    let _ = tokio::time::timeout(FINAL_WRITE_DEADLINE, async {
        use tokio::io::AsyncWriteExt;
        stream.shutdown().await
    })
    .await;
}

fn drain(
    conn: &mut ClientConnection,
    hash: &mut Option<HashProtocol>,
    received: &mpsc::Sender<Bytes>,
    state: &watch::Sender<CallState>,
    mut inform: Option<&mut Inform>,
) {
    while let Some(event) = conn.poll_event() {
        match event {
            ClientEvent::Connected { hash_protocol } => {
                *hash = Some(hash_protocol);
                state.send_if_modified(|s| match s {
                    CallState::Up {
                        hash_protocol: h, ..
                    } => {
                        *h = Some(hash_protocol);
                        true
                    }
                    _ => false,
                });
            }
            ClientEvent::Ipv4Up { local, dns } => {
                if let Some(inform) = inform.as_deref_mut()
                    && inform.xid.is_none()
                {
                    // Windows RAS sends a DHCPINFORM as soon as IPCP is up (windows-client.md
                    // §1.9); once, here: no public source says how it retries.
                    let xid = rand::random::<u32>();
                    let hardware = [0x02, 0x00, 0x53, 0x53, 0x54, 0x50];
                    let _ = conn.send_ip(&windows_inform(local, xid, hardware));
                    inform.xid = Some(xid);
                }
                state.send_replace(CallState::Up {
                    local,
                    dns,
                    hash_protocol: *hash,
                });
            }
            ClientEvent::Closed { reason } => {
                state.send_replace(CallState::Closed(reason));
            }
            ClientEvent::AuthFailed { message } => {
                state.send_replace(CallState::AuthFailed(message));
            }
            ClientEvent::HttpAccepted | ClientEvent::Authenticated | ClientEvent::Ipv6Up { .. } => {
            }
        }
    }
    while let Some(packet) = conn.poll_ip() {
        if let Some(inform) = inform.as_deref_mut()
            && let Ok(ack) = parse_ack(packet)
            && Some(ack.xid) == inform.xid
        {
            // The DHCP client of the OS takes its answer; applications never see it.
            inform.ack.send_replace(Some(ack));
            continue;
        }
        // A full queue drops, as a NIC would; the reader is the test or the load tool.
        let _ = received.try_send(Bytes::copy_from_slice(packet));
    }
    if conn.is_closed() && !matches!(*state.borrow(), CallState::Closed(_)) {
        state.send_replace(CallState::Closed(CloseReason::TransportClosed));
    }
}
