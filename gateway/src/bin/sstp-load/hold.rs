//! `hold`: keeps N sessions up and redials each one the moment it ends, recording how every
//! session ended and how long it was without a tunnel. What a rollout or a drain looks like from
//! the clients' side: with a gateway that drains properly, every end is the server's
//! CALL_DISCONNECT (`peer_disconnected`), never a reset (`transport_closed`).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use sstp_gateway::client::{Client, ClientOptions};
use sstp_proto::CloseReason;
use tokio::{sync::watch, task::JoinSet};

use crate::{Common, modes};

/// Pause between failed dials of one session (a pod going away refuses for a moment).
const REDIAL_PAUSE: Duration = Duration::from_millis(250);
/// How often the stop file is looked for.
const STOP_POLL: Duration = Duration::from_millis(200);

/// What one session went through.
#[derive(Debug, Default)]
struct History {
    /// Why each call ended while the run went on (not the final disconnect).
    ends: Vec<&'static str>,
    /// When each ended (wall clock, for comparing with what a test did meanwhile).
    ended_at: Vec<std::time::SystemTime>,
    /// Time without a tunnel after each end, when it came back.
    gaps: Vec<Duration>,
    /// Dials that failed (each retried until `--redial-attempts`).
    failed_dials: u32,
    /// Whether the session was up when the run stopped.
    up_at_stop: bool,
    /// Whether it was up before the ready file was written.
    up_at_start: bool,
}

/// How many sessions have a tunnel right now, and the fewest there were at any moment since the
/// ready file was written: "was somebody connected through the whole drain" in one number.
#[derive(Debug)]
struct UpGauge {
    up: AtomicU32,
    /// `u32::MAX` until the run is ready; ends before that are the ramp, not the measurement.
    fewest: AtomicU32,
}

impl UpGauge {
    fn new() -> Self {
        Self {
            up: AtomicU32::new(0),
            fewest: AtomicU32::new(u32::MAX),
        }
    }

    fn session_up(&self) {
        self.up.fetch_add(1, Ordering::SeqCst);
    }

    fn session_down(&self) {
        let now = self.up.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        // fetch_min on MAX (not ready yet) would start the measurement early.
        let _ = self
            .fewest
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |fewest| {
                (fewest != u32::MAX && now < fewest).then_some(now)
            });
    }

    fn start_measuring(&self) {
        self.fewest
            .store(self.up.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// The fewest up since [`Self::start_measuring`] (0 if it never started).
    fn fewest(&self) -> u32 {
        match self.fewest.load(Ordering::SeqCst) {
            u32::MAX => 0,
            fewest => fewest,
        }
    }
}

/// `hold`: N sessions up until `--duration` passes or `stop_file` appears.
pub(crate) async fn hold(
    common: &Common,
    attempts: u32,
    ready_file: Option<&Path>,
    stop_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let template = modes::client_options(common)?;
    let (stop_tx, stop) = watch::channel(false);
    let (up_tx, mut up_rx) = tokio::sync::mpsc::channel::<()>(usize::try_from(common.sessions)?);
    let period = Duration::from_secs_f64(1.0 / common.rate);
    let gauge = Arc::new(UpGauge::new());
    let mut tasks = JoinSet::new();
    let mut ticker = tokio::time::interval(period);
    for _ in 0..common.sessions {
        ticker.tick().await;
        tasks.spawn(session(
            template.clone(),
            attempts,
            stop.clone(),
            up_tx.clone(),
            Arc::clone(&gauge),
        ));
    }
    drop(up_tx);
    // Every session up once (or given up on): the caller may start what it measures.
    let mut up = 0;
    while up_rx.recv().await.is_some() {
        up += 1;
    }
    println!("sessions up        {up} of {}", common.sessions);
    gauge.start_measuring();
    if let Some(path) = ready_file {
        std::fs::write(path, format!("{up}\n"))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let deadline = tokio::time::Instant::now() + common.duration;
    loop {
        if tokio::time::Instant::now() >= deadline || stop_file.as_deref().is_some_and(Path::exists)
        {
            break;
        }
        tokio::time::sleep(STOP_POLL).await;
    }
    let _ = stop_tx.send(true);
    let mut histories = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        histories.push(joined.context("a session task failed")?);
    }
    report(common.sessions, &histories, gauge.fewest());
    Ok(())
}

/// One session: dial, hold, and on every end record why and dial again, until `stop`.
async fn session(
    options: ClientOptions,
    attempts: u32,
    mut stop: watch::Receiver<bool>,
    up: tokio::sync::mpsc::Sender<()>,
    gauge: Arc<UpGauge>,
) -> History {
    let mut history = History::default();
    let mut up = Some(up);
    let mut down_since: Option<Instant> = None;
    loop {
        let Some(mut client) = dial(&options, attempts, &mut history, &mut stop).await else {
            // Given up (or stopping): the initial wait must not hang on this one.
            drop(up.take());
            return history;
        };
        gauge.session_up();
        if let Some(since) = down_since.take() {
            history.gaps.push(since.elapsed());
        }
        if let Some(up) = up.take() {
            history.up_at_start = true;
            let _ = up.send(()).await;
        }
        tokio::select! {
            reason = client.closed() => {
                gauge.session_down();
                history.ends.push(reason.metric_label());
                history.ended_at.push(std::time::SystemTime::now());
                down_since = Some(Instant::now());
            }
            () = stopped(&mut stop) => {
                history.up_at_stop = true;
                let _ = tokio::time::timeout(modes::DISCONNECT_TIMEOUT, client.disconnect()).await;
                return history;
            }
        }
    }
}

/// Resolves once the run stops (holding no borrow of the flag, so it may precede an await).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Dials until a tunnel is up, at most `attempts` times; `None` when all failed or the run
/// stops meanwhile.
async fn dial(
    options: &ClientOptions,
    attempts: u32,
    history: &mut History,
    stop: &mut watch::Receiver<bool>,
) -> Option<Client> {
    for _ in 0..attempts {
        if *stop.borrow() {
            return None;
        }
        let attempt = tokio::time::timeout(modes::SETUP_TIMEOUT, async {
            let mut client = Client::connect(options.clone()).await?;
            client.wait_up().await?;
            Ok::<_, sstp_gateway::client::ClientError>(client)
        })
        .await;
        match attempt {
            Ok(Ok(client)) => return Some(client),
            _ => history.failed_dials += 1,
        }
        tokio::time::sleep(REDIAL_PAUSE).await;
    }
    None
}

fn report(sessions: u32, histories: &[History], fewest_up: u32) {
    let mut ends: BTreeMap<&str, u32> = BTreeMap::new();
    for end in histories.iter().flat_map(|h| &h.ends) {
        *ends.entry(end).or_default() += 1;
    }
    for (reason, count) in &ends {
        println!("ended              {count} x {reason}");
    }
    let total_ends: u32 = ends.values().sum();
    let by_disconnect = ends
        .get(CloseReason::PeerDisconnected.metric_label())
        .copied()
        .unwrap_or(0);
    let redials: usize = histories.iter().map(|h| h.gaps.len()).sum();
    let longest = histories
        .iter()
        .flat_map(|h| &h.gaps)
        .max()
        .copied()
        .unwrap_or_default();
    let up_at_start = histories.iter().filter(|h| h.up_at_start).count();
    let up_at_stop = histories.iter().filter(|h| h.up_at_stop).count();
    let failed_dials: u32 = histories.iter().map(|h| h.failed_dials).sum();
    let unix_ms = |at: Option<&std::time::SystemTime>| {
        at.and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |since| since.as_millis())
    };
    let ended_at = || histories.iter().flat_map(|h| &h.ended_at);
    let (first_end, last_end) = (unix_ms(ended_at().min()), unix_ms(ended_at().max()));
    println!("longest gap        {} ms", longest.as_millis());
    println!("fewest up at once  {fewest_up}");
    println!(
        "RESULT mode=hold sessions={sessions} up_at_start={up_at_start} ends={total_ends} \
         ends_by_disconnect={by_disconnect} ends_other={} redialed={redials} \
         failed_dials={failed_dials} up_at_stop={up_at_stop} longest_gap_ms={} \
         first_end_unix_ms={first_end} last_end_unix_ms={last_end} fewest_up={fewest_up}",
        total_ends - by_disconnect,
        longest.as_millis()
    );
}
