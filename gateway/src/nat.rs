//! NAT and MSS clamping with nftables, through the `nft` binary (Debian package `nftables`).
//!
//! The gateway owns one table, `inet sstp_gateway_<id>`, and nothing else: it never touches
//! other tables, so it coexists with kube-proxy, CNI plugins and a host firewall. The table has:
//! - `postrouting` (nat hook): masquerade packets from the pool that leave through any
//!   interface but the tunnel (only when NAT is on);
//! - `forward` (filter hook, mangle priority): clamp the TCP MSS of SYNs crossing the tunnel to
//!   what fits its MTU, so clients and far servers never send segments the tunnel must drop.
//!
//! Installing is one atomic `nft -f` batch that first creates and deletes the table, so it also
//! removes a stale copy left by a crashed run. Removing is the same create-then-delete pair, so
//! it succeeds whether or not the table exists. Rules are per network namespace (per pod).

use std::{
    io::Write,
    process::{Command, Stdio},
};

use ipnet::Ipv4Net;
use tracing::{debug, warn};

/// What the table should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatSettings {
    /// Distinguishes gateways sharing a namespace (tests, several gateways on a host).
    pub id: String,
    /// Client addresses.
    pub pool: Ipv4Net,
    /// The tunnel interface.
    pub tun_name: String,
    /// The tunnel MTU; the MSS clamp is this minus 40 (IPv4 + TCP headers).
    pub mtu: u16,
    /// Masquerade client traffic leaving through other interfaces.
    pub masquerade: bool,
}

/// The installed table. Dropping it removes the table (best effort, logged); call
/// [`NatTable::remove`] to see the error.
#[derive(Debug)]
pub struct NatTable {
    name: String,
    removed: bool,
}

/// Why nft failed.
#[derive(Debug, thiserror::Error)]
pub enum NatError {
    /// A name would not be safe inside an nft script.
    #[error("{what} {value:?} may only contain ASCII letters, digits, '_', '-' and '.'")]
    UnsafeName {
        /// "id" or "interface name".
        what: &'static str,
        /// The refused value.
        value: String,
    },
    /// `nft` could not be started (not installed?).
    #[error("cannot run nft (install the nftables package)")]
    Spawn(#[source] std::io::Error),
    /// `nft` rejected the batch.
    #[error("nft failed: {stderr}")]
    Nft {
        /// What nft printed.
        stderr: String,
    },
}

impl NatTable {
    /// Installs (or atomically replaces) the gateway's table.
    pub fn install(settings: &NatSettings) -> Result<Self, NatError> {
        let name = table_name(&settings.id)?;
        let script = format!("{}{}", reset(&name), ruleset(&name, settings)?);
        nft(&script)?;
        debug!(table = %name, "installed nftables table");
        Ok(Self {
            name,
            removed: false,
        })
    }

    /// The table's name (family `inet`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Removes the table. Idempotent.
    pub fn remove(mut self) -> Result<(), NatError> {
        self.removed = true;
        nft(&reset(&self.name))
    }
}

impl Drop for NatTable {
    fn drop(&mut self) {
        if !self.removed
            && let Err(err) = nft(&reset(&self.name))
        {
            warn!(table = %self.name, error = %err, "could not remove nftables table");
        }
    }
}

/// Removes the table of gateway `id` if one exists (e.g. left by a crashed run).
pub fn remove_stale(id: &str) -> Result<(), NatError> {
    nft(&reset(&table_name(id)?))
}

/// The table's name for gateway `id`.
pub fn table_name(id: &str) -> Result<String, NatError> {
    check_name("id", id)?;
    let id: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    Ok(format!("{TABLE_PREFIX}{id}"))
}

/// The nft script that defines the table (without the reset that precedes it).
pub fn ruleset(name: &str, settings: &NatSettings) -> Result<String, NatError> {
    let NatSettings {
        pool,
        tun_name,
        mtu,
        masquerade,
        ..
    } = settings;
    check_name("interface name", tun_name)?;
    let mss = mtu.saturating_sub(IPV4_TCP_HEADERS);
    let masquerade_rule = if *masquerade {
        format!("\t\tip saddr {pool} oifname != \"{tun_name}\" masquerade\n")
    } else {
        String::new()
    };
    let clamp = format!(
        "tcp flags syn / syn,rst tcp option maxseg size > {mss} tcp option maxseg size set {mss}"
    );
    Ok(format!(
        "table inet {name} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         {masquerade_rule}\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority mangle; policy accept;\n\
         \t\tiifname \"{tun_name}\" {clamp}\n\
         \t\toifname \"{tun_name}\" {clamp}\n\
         \t}}\n\
         }}\n"
    ))
}

/// Creating an empty table then deleting it removes any previous copy and never fails.
fn reset(name: &str) -> String {
    format!("table inet {name}\ndelete table inet {name}\n")
}

fn nft(script: &str) -> Result<(), NatError> {
    let mut child = Command::new(NFT)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NatError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(NatError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NatError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NatError::Nft {
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

fn check_name(what: &'static str, value: &str) -> Result<(), NatError> {
    let safe = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if safe {
        Ok(())
    } else {
        Err(NatError::UnsafeName {
            what,
            value: value.to_owned(),
        })
    }
}

const NFT: &str = "nft";
const TABLE_PREFIX: &str = "sstp_gateway_";
/// 20-byte IPv4 header + 20-byte TCP header, both without options.
const IPV4_TCP_HEADERS: u16 = 40;

#[cfg(test)]
mod tests;
