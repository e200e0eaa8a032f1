//! A child process that cannot outlive its test.

use std::process::Child;

/// Kills and reaps the child on drop, so a failing test leaves no process behind.
#[derive(Debug)]
pub struct Reaper(pub Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
