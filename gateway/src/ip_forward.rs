//! IPv4 forwarding in this network namespace (`net.ipv4.ip_forward`): without it the kernel
//! does not route between the TUN device and the other interfaces, so clients can log in but
//! reach nothing beyond the gateway itself.
//!
//! In a pod it is set from outside (a pod sysctl, a privileged init container running
//! `sstp-gateway enable-ip-forward`, or inherited from the node); the gateway container cannot
//! write it because the runtime mounts `/proc/sys` read-only. So [`ensure`] reads first and only
//! writes when it is off, and a failure says what to set instead of being a bare `EROFS`.

use std::path::{Path, PathBuf};

/// The sysctl file.
pub const IP_FORWARD_SYSCTL: &str = "/proc/sys/net/ipv4/ip_forward";

/// What to do when forwarding is off, for logs and error messages.
pub const HOW_TO_ENABLE: &str = "set net.ipv4.ip_forward=1 in the gateway's network namespace: \
    in Kubernetes with SstpGateway spec.pod.ipForwarding (podSysctl needs the kubelet flag \
    --allowed-unsafe-sysctls=net.ipv4.ip_forward; initContainer needs privileged init \
    containers; inheritFromNode needs net.ipv4.ip_forward=1 on the node), standalone with \
    `sysctl -w net.ipv4.ip_forward=1` as root";

/// Why forwarding could not be read or turned on.
#[derive(Debug, thiserror::Error)]
pub enum IpForwardError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The sysctl file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file holds something other than 0 or 1.
    #[error("{path} holds {value:?}, expected 0 or 1")]
    Unexpected {
        /// The sysctl file.
        path: PathBuf,
        /// What it holds (trimmed).
        value: String,
    },
    /// Writing failed: a read-only `/proc/sys` (an unprivileged container) or no `NET_ADMIN`.
    #[error(
        "cannot write 1 to {path} (a container needs privileged: true for a writable /proc/sys)"
    )]
    Write {
        /// The sysctl file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The write was accepted but the value read back is still 0.
    #[error("wrote 1 to {path} but it still reads 0")]
    StillOff {
        /// The sysctl file.
        path: PathBuf,
    },
}

/// What [`ensure`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarding {
    /// It was on already; nothing was written.
    AlreadyOn,
    /// It was off and this process turned it on.
    TurnedOn,
}

/// Whether forwarding is on according to the sysctl file at `path`.
pub fn is_enabled(path: &Path) -> Result<bool, IpForwardError> {
    let text = std::fs::read_to_string(path).map_err(|source| IpForwardError::Read {
        path: path.to_owned(),
        source,
    })?;
    match text.trim() {
        "1" => Ok(true),
        "0" => Ok(false),
        other => Err(IpForwardError::Unexpected {
            path: path.to_owned(),
            value: other.to_owned(),
        }),
    }
}

/// Turns forwarding on unless it is on already, and checks by reading it back.
pub fn ensure(path: &Path) -> Result<Forwarding, IpForwardError> {
    if is_enabled(path)? {
        return Ok(Forwarding::AlreadyOn);
    }
    std::fs::write(path, b"1\n").map_err(|source| IpForwardError::Write {
        path: path.to_owned(),
        source,
    })?;
    if is_enabled(path)? {
        Ok(Forwarding::TurnedOn)
    } else {
        Err(IpForwardError::StillOff {
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests;
