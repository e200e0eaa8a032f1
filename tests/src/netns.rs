//! A named network namespace joined to the host by a veth pair: "the network behind the gateway"
//! in the real-client and load tests.
//!
//! Unlike an anonymous namespace made with `unshare`, this one has to be reachable from
//! processes the test starts (the gateway routes into it, `ip netns exec` runs servers in it), so
//! it is named (`/run/netns/<name>`) and [`NetnsLink`]'s `Drop` deletes it; deleting the
//! namespace also destroys the veth pair, because one end lives inside it.

use std::{
    collections::BTreeSet,
    fs::File,
    net::Ipv4Addr,
    process::{Command, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
};

use nix::sched::{CloneFlags, setns};

use crate::Error;

/// Numbers the namespaces of this process, so parallel tests get distinct names.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Blocks of [`TestNet`] handed out by this process.
static TAKEN: Mutex<BTreeSet<u8>> = Mutex::new(BTreeSet::new());
/// How many blocks there are: block `k` uses 198.18.k.0/30 and 198.19.2k.0/24, 198.19.2k+1.0/24.
const BLOCKS: u8 = 128;

/// A block of addresses for one test, from the benchmarking ranges (198.18.0.0/15, RFC 2544), that
/// no interface on this host uses: a veth /30 and two /24 address pools. Test binaries (and other
/// people's runs of the same test) may run at the same time, so the addresses cannot be fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestNet {
    block: u8,
}

impl TestNet {
    /// Picks a block that no interface uses yet and this process has not handed out, starting
    /// at one derived from the process id (so two processes scanning at once rarely collide).
    pub fn pick() -> Result<Self, Error> {
        let out = Command::new("ip")
            .args(["-4", "-o", "addr", "show"])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| Error::Io {
                what: "ip -4 -o addr show".into(),
                source,
            })?;
        let addrs = String::from_utf8_lossy(&out.stdout);
        let used = |prefix: String| addrs.contains(&prefix);
        let mut taken = TAKEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let start = u8::try_from(std::process::id() % u32::from(BLOCKS)).unwrap_or(0);
        for offset in 0..BLOCKS {
            let block = (start + offset) % BLOCKS;
            let net = Self { block };
            let busy = taken.contains(&block)
                || used(format!(" 198.18.{block}."))
                || used(format!(" 198.19.{}.", net.pool_octet(0)))
                || used(format!(" 198.19.{}.", net.pool_octet(1)));
            if !busy {
                taken.insert(block);
                return Ok(net);
            }
        }
        Err(Error::Unavailable(
            "every 198.18/15 test block is in use".into(),
        ))
    }

    /// The host end of the veth (`198.18.k.1`, in a /30).
    pub fn veth_host(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.block, 1)
    }

    /// The namespace end of the veth (`198.18.k.2`).
    pub fn veth_ns(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.block, 2)
    }

    /// Address pool `n` (0 or 1): `198.19.(2k+n).0/24`.
    pub fn pool(&self, n: u8) -> String {
        format!("198.19.{}.0/24", self.pool_octet(n))
    }

    /// The first client address of pool `n` (`.2`; `.1` is the gateway's own).
    pub fn first_client(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 19, self.pool_octet(n), 2)
    }

    fn pool_octet(&self, n: u8) -> u8 {
        self.block.saturating_mul(2).saturating_add(n.min(1))
    }
}

/// A network namespace with loopback up and one veth link to the host.
#[derive(Debug)]
pub struct NetnsLink {
    name: String,
    host_if: String,
    host_addr: Ipv4Addr,
    ns_addr: Ipv4Addr,
}

impl NetnsLink {
    /// Creates the namespace and a veth pair: `host_addr/prefix_len` on the host end,
    /// `ns_addr/prefix_len` on the end inside the namespace, both up. Needs root.
    pub fn create(host_addr: Ipv4Addr, ns_addr: Ipv4Addr, prefix_len: u8) -> Result<Self, Error> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // Interface names have at most 15 bytes: "se" + pid (<= 7 digits) + "h"/"n" + n.
        let link = Self {
            name: format!("sstpe2e-{pid}-{n}"),
            host_if: format!("se{pid}h{n}"),
            host_addr,
            ns_addr,
        };
        let ns_if = format!("se{pid}n{n}");
        run(Command::new("ip").args(["netns", "add", &link.name]))?;
        // From here on, Drop cleans up whatever the next steps manage to create.
        let host_cidr = format!("{host_addr}/{prefix_len}");
        let ns_cidr = format!("{ns_addr}/{prefix_len}");
        run(Command::new("ip").args([
            "link",
            "add",
            &link.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ]))?;
        run(Command::new("ip").args(["link", "set", &ns_if, "netns", &link.name]))?;
        run(Command::new("ip").args(["addr", "add", &host_cidr, "dev", &link.host_if]))?;
        run(Command::new("ip").args(["link", "set", &link.host_if, "up"]))?;
        run(link.command("ip").args(["link", "set", "lo", "up"]))?;
        run(link
            .command("ip")
            .args(["addr", "add", &ns_cidr, "dev", &ns_if]))?;
        run(link.command("ip").args(["link", "set", &ns_if, "up"]))?;
        Ok(link)
    }

    /// Routes `cidr` (e.g. the gateway's address pool) from inside the namespace to the host end
    /// of the veth, so replies to tunnel clients go back through the gateway without NAT.
    pub fn route_to_host(&self, cidr: &str) -> Result<(), Error> {
        let via = self.host_addr.to_string();
        run(self.command("ip").args(["route", "add", cidr, "via", &via]))
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Moves the calling thread into the namespace (sockets it opens afterwards live there).
    /// Use it on a thread of its own: the thread never comes back to the host namespace, and
    /// while it lives the namespace (and the veth pair) cannot go away.
    pub fn enter_on_this_thread(&self) -> Result<(), Error> {
        enter_named(&self.name)
    }

    /// The namespace's name (`ip netns` name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host end's interface name.
    pub fn host_interface(&self) -> &str {
        &self.host_if
    }

    /// The host end's address.
    pub fn host_addr(&self) -> Ipv4Addr {
        self.host_addr
    }

    /// The address inside the namespace.
    pub fn ns_addr(&self) -> Ipv4Addr {
        self.ns_addr
    }
}

impl Drop for NetnsLink {
    fn drop(&mut self) {
        // The host end may exist without the namespace having got its peer; delete both ways.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Moves the calling thread into the named network namespace `/run/netns/<name>`.
pub(crate) fn enter_named(name: &str) -> Result<(), Error> {
    let path = format!("/run/netns/{name}");
    let file = File::open(&path).map_err(|source| Error::Io {
        what: format!("opening {path}"),
        source,
    })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| Error::Io {
        what: format!("entering network namespace {name}"),
        source: errno.into(),
    })
}

/// Runs a command to completion; an error names the command and carries its stderr.
pub(crate) fn run(command: &mut Command) -> Result<(), Error> {
    let what = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Io {
            what: what.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Io {
            what,
            source: std::io::Error::other(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        })
    }
}
