//! The tunnel address allocator: pure bookkeeping over one IPv4 CIDR, no I/O.
//!
//! Layout of a pool `N/len`: the network address and the broadcast address are never used, the
//! first usable address is the gateway's own (its end of every PPP link), and everything between
//! that and the broadcast address goes to clients. Static addresses from the users document are
//! *reserved*: only [`IpPool::allocate_static`] hands them out, never [`IpPool::allocate`].

use std::{collections::HashSet, net::Ipv4Addr};

use ipnet::Ipv4Net;

/// The address allocator of one gateway.
#[derive(Debug, Clone)]
pub struct IpPool {
    net: Ipv4Net,
    /// First client address (gateway + 1), as an integer.
    first: u32,
    /// Last client address (broadcast - 1), as an integer.
    last: u32,
    /// Where the next dynamic search starts: rotating avoids handing a just-released address to
    /// the next client while the old one's packets may still be in flight.
    cursor: u32,
    in_use: HashSet<Ipv4Addr>,
    reserved: HashSet<Ipv4Addr>,
}

/// How many addresses are in each state, for the `sstp_address_pool_addresses{state}` gauge.
/// `free + allocated + reserved` is the number of client addresses in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolCounts {
    /// Neither in use nor reserved.
    pub free: u32,
    /// In use by a session (dynamic or static).
    pub allocated: u32,
    /// Reserved for a user's static address and not in use.
    pub reserved: u32,
}

/// Why the pool refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The CIDR has no room for a gateway address and one client.
    #[error("address pool {0} is too small (need /30 or larger)")]
    TooSmall(Ipv4Net),
    /// Every dynamic address is in use or reserved.
    #[error("address pool exhausted")]
    Exhausted,
    /// The address is not a client address of this pool.
    #[error("{0} is not a client address of the pool")]
    OutOfRange(Ipv4Addr),
    /// The address is already held by another session.
    #[error("{0} is already in use")]
    InUse(Ipv4Addr),
}

impl IpPool {
    /// A pool over `net` (host bits are ignored). Needs a /30 or larger.
    pub fn new(net: Ipv4Net) -> Result<Self, PoolError> {
        let net = net.trunc();
        if net.prefix_len() > 30 {
            return Err(PoolError::TooSmall(net));
        }
        let first = u32::from(net.network()) + 2;
        let last = u32::from(net.broadcast()) - 1;
        Ok(Self {
            net,
            first,
            last,
            cursor: first,
            in_use: HashSet::new(),
            reserved: HashSet::new(),
        })
    }

    /// The pool's CIDR.
    pub fn network(&self) -> Ipv4Net {
        self.net
    }

    /// The gateway's own tunnel address: the first usable address.
    pub fn gateway_address(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.first - 1)
    }

    /// Whether `addr` is one that may be given to a client.
    pub fn is_client_address(&self, addr: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(addr))
    }

    /// Replaces the set of reserved (static) addresses, e.g. after a users document reload.
    /// Returns the addresses refused because they are not client addresses of this pool.
    /// Addresses already in use stay in use; once released, a reserved one is no longer handed
    /// out dynamically.
    pub fn set_reserved(&mut self, addrs: impl IntoIterator<Item = Ipv4Addr>) -> Vec<Ipv4Addr> {
        let (inside, outside): (HashSet<_>, HashSet<_>) = addrs
            .into_iter()
            .partition(|addr| self.is_client_address(*addr));
        self.reserved = inside;
        let mut outside: Vec<_> = outside.into_iter().collect();
        outside.sort();
        outside
    }

    /// Hands out a free, unreserved address.
    pub fn allocate(&mut self) -> Result<Ipv4Addr, PoolError> {
        let size = self.last - self.first + 1;
        for step in 0..size {
            let candidate = self.first + (self.cursor - self.first + step) % size;
            let addr = Ipv4Addr::from(candidate);
            if !self.in_use.contains(&addr) && !self.reserved.contains(&addr) {
                self.in_use.insert(addr);
                self.cursor = if candidate == self.last {
                    self.first
                } else {
                    candidate + 1
                };
                return Ok(addr);
            }
        }
        Err(PoolError::Exhausted)
    }

    /// Hands out a specific address (a user's static address), if it is a free client address.
    pub fn allocate_static(&mut self, addr: Ipv4Addr) -> Result<Ipv4Addr, PoolError> {
        if !self.is_client_address(addr) {
            return Err(PoolError::OutOfRange(addr));
        }
        if !self.in_use.insert(addr) {
            return Err(PoolError::InUse(addr));
        }
        Ok(addr)
    }

    /// Returns an address to the pool. False if it was not in use (a double release is harmless).
    pub fn release(&mut self, addr: Ipv4Addr) -> bool {
        self.in_use.remove(&addr)
    }

    /// Whether `addr` is currently held by a session.
    pub fn is_in_use(&self, addr: Ipv4Addr) -> bool {
        self.in_use.contains(&addr)
    }

    /// Counts per state for the pool gauge.
    pub fn counts(&self) -> PoolCounts {
        let capacity = self.last - self.first + 1;
        let allocated = self.in_use.len() as u32;
        let reserved = self
            .reserved
            .iter()
            .filter(|addr| !self.in_use.contains(addr))
            .count() as u32;
        PoolCounts {
            free: capacity - allocated - reserved,
            allocated,
            reserved,
        }
    }
}

#[cfg(test)]
mod tests;
