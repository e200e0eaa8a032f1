//! The users document in force, and the file watcher that keeps it current.
//!
//! [`UsersPublisher`] is the one place a new users document enters the gateway: every source
//! (this file watcher now, a Kubernetes Secret watch later) hands it the raw text with
//! [`UsersPublisher::offer`]. It parses and validates; a good document replaces the current one
//! on a `watch` channel that sessions subscribe to, a bad one is logged and counted and the last
//! good document stays in force.
//!
//! The file is polled (metadata every 500 ms) instead of watched with inotify. Editors replace
//! files by renaming a new one over the old, and Kubernetes updates a mounted Secret by swapping
//! a `..data` symlink to a new directory; inotify watches on the path's old inode miss both
//! unless one also watches the directory and re-arms after every swap. Following the path with
//! `stat` on each poll sees a new inode, size or mtime whichever way the file was replaced, and
//! costs one syscall per interval. A change is read once the metadata has held still for one
//! interval (so a half-written file is not parsed), and the content is re-read every
//! [`FULL_REREAD_EVERY`] polls in case a same-size rewrite kept the same mtime.

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use sstp_api::{UsersDocument, UsersDocumentError};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::metrics::{Metrics, ReloadResult};

/// Parses offered users documents and publishes the good ones.
#[derive(Debug, Clone)]
pub struct UsersPublisher {
    sender: Arc<watch::Sender<Arc<UsersDocument>>>,
    /// Turns true at the first document accepted from the source.
    loaded: Arc<watch::Sender<bool>>,
    metrics: Metrics,
}

impl UsersPublisher {
    /// A publisher whose channel starts with an empty document (nobody can log in until a
    /// source offers one).
    pub fn new(metrics: Metrics) -> (Self, watch::Receiver<Arc<UsersDocument>>) {
        let (sender, receiver) = watch::channel(Arc::new(UsersDocument::new()));
        (
            Self {
                sender: Arc::new(sender),
                loaded: Arc::new(watch::channel(false).0),
                metrics,
            },
            receiver,
        )
    }

    /// Resolves once a document from the source is in force (at once if one already is): until
    /// then every login would fail, so the gateway does not report ready.
    pub fn loaded(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut loaded = self.loaded.subscribe();
        async move {
            let _ = loaded.wait_for(|loaded| *loaded).await;
        }
    }

    /// Another receiver of the document in force.
    pub fn subscribe(&self) -> watch::Receiver<Arc<UsersDocument>> {
        self.sender.subscribe()
    }

    /// The document in force.
    pub fn current(&self) -> Arc<UsersDocument> {
        Arc::clone(&self.sender.borrow())
    }

    /// Parses `text` from `origin` (a path or a Secret name, for the log). On success the
    /// document is published and its number of users returned; on error the last good document
    /// stays in force and the error is returned.
    pub fn offer(&self, origin: &str, text: &str) -> Result<usize, UsersDocumentError> {
        match UsersDocument::from_json(text) {
            Ok(document) => {
                let users = document.users.len();
                self.sender.send_if_modified(|current| {
                    let changed = **current != document;
                    if changed {
                        *current = Arc::new(document);
                    }
                    changed
                });
                self.loaded.send_replace(true);
                self.metrics
                    .users_reloaded(ReloadResult::Success, Some(users));
                info!(origin, users, "users document loaded");
                Ok(users)
            }
            Err(err) => {
                self.metrics.users_reloaded(ReloadResult::Error, None);
                warn!(origin, error = %err.without_user_names(), "users document refused; the last good one stays in force");
                debug!(origin, error = %err, "users document refused (full error)");
                Err(err)
            }
        }
    }
}

/// Polls `path` every `interval` and offers each new content to `publisher`, until `shutdown`.
/// The first poll happens at once.
pub async fn watch_file(
    path: PathBuf,
    publisher: UsersPublisher,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    keep_watching(FileState::default(), path, publisher, interval, shutdown).await;
}

/// Reads `path` now, so the gateway serves with its users from the first connection, then
/// returns the poller that goes on watching it (whose first poll sees nothing new: the file is
/// loaded and counted once at start-up).
pub async fn load_then_watch(
    path: PathBuf,
    publisher: UsersPublisher,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) -> impl Future<Output = ()> {
    let mut state = FileState::default();
    state.poll(&path, &publisher).await;
    keep_watching(state, path, publisher, interval, shutdown)
}

async fn keep_watching(
    mut state: FileState,
    path: PathBuf,
    publisher: UsersPublisher,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => state.poll(&path, &publisher).await,
        }
    }
}

/// What the watcher saw last.
#[derive(Debug, Default)]
struct FileState {
    /// Metadata at the previous poll; a change is read only once this repeats.
    last_seen: Option<Stamp>,
    /// Metadata of the content last read.
    last_read: Option<Stamp>,
    /// The content last offered, to skip offering the same bytes again.
    last_text: Option<String>,
    /// Whether the file was missing or unreadable at the last poll (logged once per episode).
    missing: bool,
    polls: u32,
}

/// Identity and version of a file: a rename-replace changes the inode, a rewrite the mtime/size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl FileState {
    async fn poll(&mut self, path: &Path, publisher: &UsersPublisher) {
        self.polls = self.polls.wrapping_add(1);
        let stamp = match tokio::fs::metadata(path).await {
            Ok(meta) => Stamp::of(&meta),
            Err(err) => return self.unreadable(path, publisher, &err),
        };
        let settled = self.last_seen == Some(stamp);
        self.last_seen = Some(stamp);
        let changed = self.last_read != Some(stamp);
        let due = self.polls.is_multiple_of(FULL_REREAD_EVERY);
        if !(changed && (settled || self.last_read.is_none()) || due) {
            return;
        }
        let text = match tokio::fs::read_to_string(path).await {
            Ok(text) => text,
            Err(err) => return self.unreadable(path, publisher, &err),
        };
        self.missing = false;
        self.last_read = Some(stamp);
        if self.last_text.as_deref() == Some(text.as_str()) {
            return;
        }
        // A refused document is remembered too: it is not offered again until the file changes.
        let _ = publisher.offer(&path.display().to_string(), &text);
        self.last_text = Some(text);
    }

    fn unreadable(&mut self, path: &Path, publisher: &UsersPublisher, err: &std::io::Error) {
        self.last_seen = None;
        self.last_read = None;
        self.last_text = None;
        if !self.missing {
            self.missing = true;
            publisher.metrics.users_reloaded(ReloadResult::Error, None);
            warn!(path = %path.display(), error = %err, "cannot read the users file; the last good document stays in force");
        }
    }
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

/// How often the watcher looks at the file.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Every this many polls the content is read even if the metadata looks unchanged (10 s at the
/// default interval).
pub const FULL_REREAD_EVERY: u32 = 20;

#[cfg(test)]
mod tests;
