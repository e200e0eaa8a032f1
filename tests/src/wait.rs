//! Polling: [`eventually`] for eventually-consistent cluster state (controllers act
//! asynchronously), [`poll_until`] for threads without a runtime (child processes, the VM).

use std::future::Future;
use std::time::{Duration, Instant};

use crate::Error;

/// How often [`eventually`] asks again.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Calls `check` until it returns `Ok(Some(value))` and returns that value, or fails with
/// [`Error::Timeout`] (naming `what`) once `timeout` has passed. `Ok(None)` means "not yet"; an `Err`
/// from `check` ends the wait at once.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, Error>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                after: timeout,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// How a child process that serves HTTP came up: [`wait_http_ready`]'s answer.
#[derive(Debug)]
pub enum Started {
    /// `path` answered 200.
    Ready,
    /// The process exited first.
    Exited(std::process::ExitStatus),
    /// Neither within the timeout.
    TimedOut,
}

/// Waits until `path` on `addr` answers 200 while `exited` (the child's `try_wait`) says it
/// still runs, polling every `poll` for at most `timeout`.
pub fn wait_http_ready(
    addr: std::net::SocketAddr,
    path: &str,
    timeout: Duration,
    poll: Duration,
    mut exited: impl FnMut() -> Option<std::process::ExitStatus>,
) -> Result<Started, Error> {
    let outcome = poll_until(timeout, poll, || {
        if let Some(status) = exited() {
            return Ok(Some(Started::Exited(status)));
        }
        let ready = matches!(crate::gateway_process::http_get(addr, path), Ok((200, _)));
        Ok(ready.then_some(Started::Ready))
    })?;
    Ok(outcome.unwrap_or(Started::TimedOut))
}

/// Calls `check` every `poll` until it returns `Ok(Some(value))` and returns that value, or
/// `Ok(None)` once `timeout` has passed, so each caller says what did not happen with what it
/// knows (a log, a console tail). An `Err` from `check` ends the wait at once. Blocking: for
/// test threads without a runtime.
pub fn poll_until<T>(
    timeout: Duration,
    poll: Duration,
    mut check: impl FnMut() -> Result<Option<T>, Error>,
) -> Result<Option<T>, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check()? {
            return Ok(Some(value));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(poll);
    }
}
