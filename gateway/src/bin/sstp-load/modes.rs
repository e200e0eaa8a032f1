//! The client modes `setup`, `throughput`, `idle` and what `hold` shares with them.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bytes::Bytes;
use rustls::pki_types::ServerName;
use sstp_gateway::client::{Client, ClientOptions, roots_from_pem, tls_config_with_ca};
use tokio::task::JoinSet;

use crate::{
    Common,
    sink::blast_body,
    stats::{mbit, ms, percentile},
    wire::{self, Kind},
};

/// Deadline for one session to come up (TCP + TLS + SSTP + PPP).
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline for all sessions to say goodbye.
pub(crate) const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause after sending so the last datagrams reach the sink before we ask for its counts.
const DRAIN: Duration = Duration::from_millis(500);
/// Attempts and per-attempt wait for the sink's answer (UDP: it may be lost).
const STATS_ATTEMPTS: u32 = 5;
const STATS_WAIT: Duration = Duration::from_secs(1);
/// How long the gateway gets to settle before RSS is read.
const SETTLE: Duration = Duration::from_secs(2);

/// A session whose tunnel is up.
pub(crate) struct Session {
    pub(crate) client: Client,
    pub(crate) local: Ipv4Addr,
    id: u32,
}

/// What opening the sessions gave.
pub(crate) struct Opened {
    pub(crate) sessions: Vec<Session>,
    latencies: Vec<Duration>,
    pub(crate) errors: BTreeMap<String, u32>,
    /// From the first connect to the last tunnel up.
    span: Duration,
}

/// `setup`: sessions per second and handshake latency.
pub(crate) async fn setup(common: &Common) -> anyhow::Result<()> {
    let opened = open_sessions(common).await?;
    let up = opened.sessions.len();
    let rate = up as f64 / opened.span.as_secs_f64().max(1e-9);
    let mut latencies = opened.latencies.clone();
    latencies.sort();
    println!("sessions up        {up} of {}", common.sessions);
    print_errors(&opened.errors);
    println!(
        "setup rate         {rate:.1} sessions/s (offered {} /s)",
        common.rate
    );
    println!(
        "handshake latency  p50 {} ms  p90 {} ms  p99 {} ms  max {} ms",
        ms(percentile(&latencies, 50)),
        ms(percentile(&latencies, 90)),
        ms(percentile(&latencies, 99)),
        ms(percentile(&latencies, 100)),
    );
    tokio::time::sleep(common.duration).await;
    let still_up = count_up(&opened.sessions);
    close_all(opened.sessions).await;
    println!(
        "RESULT mode=setup sessions={} up={up} failed={} still_up={still_up} rate_per_s={rate:.1} p50_ms={} p90_ms={} p99_ms={} max_ms={}",
        common.sessions,
        opened.errors.values().sum::<u32>(),
        ms(percentile(&latencies, 50)),
        ms(percentile(&latencies, 90)),
        ms(percentile(&latencies, 99)),
        ms(percentile(&latencies, 100)),
    );
    Ok(())
}

/// `idle`: the gateway's RSS growth per idle session.
pub(crate) async fn idle(common: &Common, gateway_pid: u32) -> anyhow::Result<()> {
    let before = vm_rss_kib(gateway_pid)?;
    let opened = open_sessions(common).await?;
    let up = opened.sessions.len();
    print_errors(&opened.errors);
    tokio::time::sleep(SETTLE).await;
    let after = vm_rss_kib(gateway_pid)?;
    tokio::time::sleep(common.duration).await;
    let held = vm_rss_kib(gateway_pid)?;
    let still_up = count_up(&opened.sessions);
    let per_session = if up == 0 {
        0.0
    } else {
        after.saturating_sub(before) as f64 / up as f64
    };
    println!(
        "sessions up        {up} of {} ({still_up} still up after {:?})",
        common.sessions, common.duration
    );
    println!(
        "gateway VmRSS      {before} KiB before, {after} KiB with the sessions, {held} KiB after holding"
    );
    println!("per idle session   {per_session:.1} KiB");
    close_all(opened.sessions).await;
    println!(
        "RESULT mode=idle sessions={} up={up} still_up={still_up} rss_before_kib={before} rss_after_kib={after} rss_held_kib={held} kib_per_session={per_session:.1}",
        common.sessions
    );
    Ok(())
}

/// `throughput`: upstream (tunnels to sink) and downstream (sink to tunnels) goodput.
pub(crate) async fn throughput(
    common: &Common,
    sink: SocketAddr,
    payload: u16,
) -> anyhow::Result<()> {
    let SocketAddr::V4(sink) = sink else {
        bail!("the sink must have an IPv4 address");
    };
    let opened = open_sessions(common).await?;
    print_errors(&opened.errors);
    if opened.sessions.is_empty() {
        bail!("no session came up");
    }
    let n = opened.sessions.len();
    let duration = common.duration;

    // Upstream: every session sends as fast as its tunnel takes datagrams.
    let mut senders = JoinSet::new();
    for session in opened.sessions {
        senders.spawn(async move {
            let sent = send_for(&session, sink, payload, duration).await;
            (session, sent)
        });
    }
    let mut sessions = Vec::with_capacity(n);
    let mut sent_packets = 0u64;
    while let Some(joined) = senders.join_next().await {
        let (session, sent) = joined.context("a sender task failed")?;
        sent_packets += sent;
        sessions.push(session);
    }
    tokio::time::sleep(DRAIN).await;
    let mut up_packets = 0u64;
    let mut up_bytes = 0u64;
    let mut up_span = Duration::ZERO;
    let mut askers = JoinSet::new();
    for mut session in sessions {
        askers.spawn(async move {
            let stats = ask_stats(&mut session, sink).await;
            (session, stats)
        });
    }
    let mut sessions = Vec::with_capacity(n);
    let mut unanswered = 0;
    while let Some(joined) = askers.join_next().await {
        let (session, stats) = joined.context("a stats task failed")?;
        match stats {
            Some(stats) => {
                up_packets += stats.packets;
                up_bytes += stats.bytes;
                up_span = up_span.max(Duration::from_nanos(stats.span_ns));
            }
            None => unanswered += 1,
        }
        sessions.push(session);
    }

    // Downstream: the sink sends to every session for `duration`; we count what arrives.
    let mut receivers = JoinSet::new();
    for mut session in sessions {
        receivers.spawn(async move {
            let got = receive_blast(&mut session, sink, payload, duration).await;
            (session, got)
        });
    }
    let mut sessions = Vec::with_capacity(n);
    let (mut down_packets, mut down_bytes, mut down_span) = (0u64, 0u64, Duration::ZERO);
    while let Some(joined) = receivers.join_next().await {
        let (session, (packets, bytes, span)) = joined.context("a receiver task failed")?;
        down_packets += packets;
        down_bytes += bytes;
        down_span = down_span.max(span);
        sessions.push(session);
    }
    close_all(sessions).await;

    let loss = if sent_packets == 0 {
        0.0
    } else {
        100.0 * (sent_packets.saturating_sub(up_packets)) as f64 / sent_packets as f64
    };
    let ip_size = u64::from(payload) + (wire::IPV4_HEADER + wire::UDP_HEADER) as u64;
    println!("tunnels            {n} (IP packets of {ip_size} bytes)");
    println!(
        "upstream           {} Mbit/s at the sink ({up_packets} of {sent_packets} packets arrived, {loss:.1}% lost{})",
        mbit(up_bytes, up_span),
        if unanswered > 0 {
            format!(", {unanswered} sessions without stats")
        } else {
            String::new()
        }
    );
    println!(
        "downstream         {} Mbit/s at the clients ({down_packets} packets)",
        mbit(down_bytes, down_span)
    );
    println!(
        "RESULT mode=throughput tunnels={n} packet_bytes={ip_size} up_mbit_s={} up_packets={up_packets} sent_packets={sent_packets} up_loss_pct={loss:.1} down_mbit_s={} down_packets={down_packets}",
        mbit(up_bytes, up_span),
        mbit(down_bytes, down_span),
    );
    Ok(())
}

/// The client every session of a run dials with (TLS with the CA, the user, the profile).
pub(crate) fn client_options(common: &Common) -> anyhow::Result<ClientOptions> {
    let ca = std::fs::read(&common.ca_cert)
        .with_context(|| format!("cannot read {}", common.ca_cert.display()))?;
    let tls = tls_config_with_ca(&ca).context("invalid CA certificate")?;
    let password = std::fs::read_to_string(&common.password_file)
        .with_context(|| format!("cannot read {}", common.password_file.display()))?;
    let password = password.lines().next().unwrap_or_default().to_owned();
    let server_name = ServerName::try_from(common.server_name.clone())
        .with_context(|| format!("invalid server name {}", common.server_name))?;
    let ppp = sstp_ppp::ClientConfig {
        username: common.user.clone(),
        password,
        auth: sstp_ppp::AuthPolicy::default(),
        request_dns: false,
        ipv6: false,
        timers: sstp_ppp::Timers::default(),
        link: sstp_ppp::LinkProfile::Minimal,
    };
    let sstp = sstp_proto::ClientConfig::new(ppp, common.server_name.clone());
    Ok(match common.profile {
        None => ClientOptions::new(common.target, server_name, tls, sstp),
        Some(profile) => ClientOptions::for_profile(
            profile,
            common.target,
            server_name,
            roots_from_pem(&ca).context("invalid CA certificate")?,
            sstp,
        ),
    })
}

/// Opens `common.sessions` sessions at `common.rate` per second, each bounded by
/// [`SETUP_TIMEOUT`].
async fn open_sessions(common: &Common) -> anyhow::Result<Opened> {
    open_sessions_with(common, client_options(common)?).await
}

/// [`open_sessions`] with the client options given (`tcp` raises the receive queue).
pub(crate) async fn open_sessions_with(
    common: &Common,
    template: ClientOptions,
) -> anyhow::Result<Opened> {
    let template = Arc::new(template);
    let period = Duration::from_secs_f64(1.0 / common.rate);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    // Session ids key the sink's counters, which outlive a run: start each run somewhere else.
    let id_base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos())
        ^ std::process::id().rotate_left(16);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..common.sessions {
        ticker.tick().await;
        let mut options = (*template).clone();
        if common.source_addresses > 1 {
            let host = 1 + u8::try_from(i % u32::from(common.source_addresses)).unwrap_or(0);
            options.bind = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)));
        }
        tasks.spawn(async move {
            let begun = Instant::now();
            let result = tokio::time::timeout(SETUP_TIMEOUT, async {
                let mut client = Client::connect(options).await?;
                let local = client.wait_up().await?;
                Ok::<_, sstp_gateway::client::ClientError>((client, local))
            })
            .await;
            (id_base.wrapping_add(i), begun.elapsed(), result)
        });
    }
    let mut opened = Opened {
        sessions: Vec::new(),
        latencies: Vec::new(),
        errors: BTreeMap::new(),
        span: Duration::ZERO,
    };
    while let Some(joined) = tasks.join_next().await {
        let (id, took, result) = joined.context("a session task failed")?;
        match result {
            Ok(Ok((client, local))) => {
                opened.latencies.push(took);
                opened.span = opened.span.max(started.elapsed());
                opened.sessions.push(Session { client, local, id });
            }
            Ok(Err(err)) => *opened.errors.entry(with_causes(&err)).or_default() += 1,
            Err(_) => *opened.errors.entry("setup timed out".into()).or_default() += 1,
        }
    }
    Ok(opened)
}

/// Sends `Data` datagrams to the sink for `duration`; returns how many were queued.
async fn send_for(
    session: &Session,
    sink: std::net::SocketAddrV4,
    payload: u16,
    duration: Duration,
) -> u64 {
    let deadline = Instant::now() + duration;
    let mut seq = 0u64;
    while Instant::now() < deadline {
        let body = wire::message(
            Kind::Data,
            session.id,
            &seq.to_be_bytes(),
            usize::from(payload),
        );
        let packet = wire::udp_packet(session.local, *sink.ip(), sink.port(), &body);
        if session.client.send_ip(Bytes::from(packet)).await.is_err() {
            break;
        }
        seq += 1;
    }
    seq
}

/// Asks the sink what it counted for this session.
async fn ask_stats(session: &mut Session, sink: std::net::SocketAddrV4) -> Option<wire::SinkStats> {
    let request = wire::message(Kind::StatsRequest, session.id, &[], 0);
    let packet = Bytes::from(wire::udp_packet(
        session.local,
        *sink.ip(),
        sink.port(),
        &request,
    ));
    for _ in 0..STATS_ATTEMPTS {
        session.client.send_ip(packet.clone()).await.ok()?;
        let deadline = tokio::time::Instant::now() + STATS_WAIT;
        while let Ok(Some(reply)) =
            tokio::time::timeout_at(deadline, session.client.recv_ip()).await
        {
            let message = wire::udp_payload(&reply).and_then(wire::parse_message);
            if let Some(message) = message
                && message.kind == Kind::Stats
                && message.session == session.id
            {
                return wire::parse_stats(message.body);
            }
        }
    }
    None
}

/// Asks the sink to send to us for `duration` and counts what arrives: (packets, IP bytes,
/// first-to-last arrival).
async fn receive_blast(
    session: &mut Session,
    sink: std::net::SocketAddrV4,
    payload: u16,
    duration: Duration,
) -> (u64, u64, Duration) {
    let request = wire::message(
        Kind::BlastRequest,
        session.id,
        &blast_body(duration, payload),
        0,
    );
    let packet = Bytes::from(wire::udp_packet(
        session.local,
        *sink.ip(),
        sink.port(),
        &request,
    ));
    if session.client.send_ip(packet).await.is_err() {
        return (0, 0, Duration::ZERO);
    }
    let deadline = tokio::time::Instant::now() + duration + STATS_WAIT + DRAIN;
    let (mut packets, mut bytes) = (0u64, 0u64);
    let (mut first, mut last) = (None, None);
    while let Ok(Some(packet)) = tokio::time::timeout_at(deadline, session.client.recv_ip()).await {
        let is_data = wire::udp_payload(&packet)
            .and_then(wire::parse_message)
            .is_some_and(|m| m.kind == Kind::Data && m.session == session.id);
        if is_data {
            let now = Instant::now();
            first.get_or_insert(now);
            last = Some(now);
            packets += 1;
            bytes += packet.len() as u64;
        }
    }
    let span = match (first, last) {
        (Some(first), Some(last)) => last.duration_since(first),
        _ => Duration::ZERO,
    };
    (packets, bytes, span)
}

fn count_up(sessions: &[Session]) -> usize {
    sessions
        .iter()
        .filter(|s| matches!(s.client.state(), sstp_gateway::client::CallState::Up { .. }))
        .count()
}

/// Disconnects every session gracefully, all at once, bounded by [`DISCONNECT_TIMEOUT`].
pub(crate) async fn close_all(sessions: Vec<Session>) {
    let mut tasks = JoinSet::new();
    for session in sessions {
        tasks.spawn(session.client.disconnect());
    }
    let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

pub(crate) fn print_errors(errors: &BTreeMap<String, u32>) {
    for (error, count) in errors {
        println!("failed             {count} x {error}");
    }
}

/// VmRSS of a process, in KiB.
fn vm_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))
}

/// An error with its causes, `outer: inner: ...`: "cannot connect" alone does not say whether
/// the SYN went unanswered, was refused or ran out of ports.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
