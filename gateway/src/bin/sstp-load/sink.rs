//! `sstp-load sink`: the far end of the throughput test, run behind the gateway (in the
//! network namespace the pool routes to). It counts `Data` datagrams per session, answers
//! `StatsRequest`s, and on a `BlastRequest` sends `Data` back to the requester for a while.
//! Plain std sockets and threads: it must not compete with the gateway for more than a core.

use std::{
    collections::HashMap,
    net::{SocketAddr, UdpSocket},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use anyhow::Context;

use crate::wire::{self, Kind, SinkStats};

/// Longest blast the sink agrees to.
const MAX_BLAST: Duration = Duration::from_secs(60);
/// Blasts running at once (one per session of a many-tunnel run).
const MAX_BLASTS: usize = 256;
/// Largest datagram we read.
const RECV_BUF: usize = 65_536;

/// Counters of one session.
#[derive(Debug)]
struct Counter {
    stats: SinkStats,
    first: Instant,
}

/// Serves until `exit_after` has passed (bounded, so a forgotten sink ends by itself).
pub(crate) fn run(listen: SocketAddr, exit_after: Duration) -> anyhow::Result<()> {
    let socket = UdpSocket::bind(listen).with_context(|| format!("cannot bind {listen}"))?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    eprintln!("sink: listening on {listen} for at most {exit_after:?}");
    let started = Instant::now();
    let mut counters: HashMap<u32, Counter> = HashMap::new();
    let mut buf = vec![0u8; RECV_BUF];
    let blasting = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        while started.elapsed() < exit_after {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let Some(message) = buf.get(..n).and_then(wire::parse_message) else {
                continue;
            };
            match message.kind {
                Kind::Data => {
                    let now = Instant::now();
                    let counter = counters.entry(message.session).or_insert(Counter {
                        stats: SinkStats::default(),
                        first: now,
                    });
                    counter.stats.packets += 1;
                    counter.stats.bytes += (n + wire::IPV4_HEADER + wire::UDP_HEADER) as u64;
                    counter.stats.span_ns =
                        u64::try_from(now.duration_since(counter.first).as_nanos())
                            .unwrap_or(u64::MAX);
                    let seq = wire::data_seq(message.body).unwrap_or(0);
                    counter.stats.max_seq = counter.stats.max_seq.max(seq);
                }
                Kind::StatsRequest => {
                    let stats = counters
                        .get(&message.session)
                        .map(|c| c.stats)
                        .unwrap_or_default();
                    let reply =
                        wire::message(Kind::Stats, message.session, &wire::stats_body(&stats), 0);
                    let _ = socket.send_to(&reply, from);
                }
                Kind::BlastRequest => {
                    if blasting.load(Ordering::Acquire) >= MAX_BLASTS {
                        continue;
                    }
                    let Some((duration, size)) = parse_blast(message.body) else {
                        continue;
                    };
                    let Ok(sender) = socket.try_clone() else {
                        continue;
                    };
                    blasting.fetch_add(1, Ordering::AcqRel);
                    let session = message.session;
                    let blasting = &blasting;
                    scope.spawn(move || {
                        blast(&sender, from, session, duration, size);
                        blasting.fetch_sub(1, Ordering::AcqRel);
                    });
                }
                Kind::Stats => {}
            }
        }
    });
    Ok(())
}

/// Body of a `BlastRequest`: duration (ms, u32) and UDP payload size (u16).
pub(crate) fn blast_body(duration: Duration, size: u16) -> Vec<u8> {
    let ms = u32::try_from(duration.as_millis()).unwrap_or(u32::MAX);
    let mut body = ms.to_be_bytes().to_vec();
    body.extend_from_slice(&size.to_be_bytes());
    body
}

fn parse_blast(body: &[u8]) -> Option<(Duration, usize)> {
    let ms = u32::from_be_bytes(body.get(..4)?.try_into().ok()?);
    let size = u16::from_be_bytes(body.get(4..6)?.try_into().ok()?);
    Some((
        Duration::from_millis(u64::from(ms)).min(MAX_BLAST),
        usize::from(size),
    ))
}

/// Sends `Data` to `to` as fast as the socket takes it, for `duration`.
fn blast(socket: &UdpSocket, to: SocketAddr, session: u32, duration: Duration, size: usize) {
    let started = Instant::now();
    let mut seq: u64 = 0;
    let mut payload = wire::message(Kind::Data, session, &seq.to_be_bytes(), size);
    let seq_at = 9; // after magic, kind and session
    while started.elapsed() < duration {
        if let Some(slot) = payload.get_mut(seq_at..seq_at + 8) {
            slot.copy_from_slice(&seq.to_be_bytes());
        }
        // ENOBUFS and the like: the gateway or the TUN queue is full; just go on.
        if socket.send_to(&payload, to).is_ok() {
            seq += 1;
        }
    }
}
