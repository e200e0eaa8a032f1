//! Classless static routes (RFC 3442, options 121 and 249): what a split tunnel tells the
//! client to send through it.

use std::net::Ipv4Addr;

use super::DhcpError;

/// One classless static route (RFC 3442): destination network and the router to reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClasslessRoute {
    destination: Ipv4Addr,
    prefix_len: u8,
    router: Ipv4Addr,
}

impl ClasslessRoute {
    /// A route to `destination/prefix_len` via `router`; host bits of `destination` are
    /// cleared. Fails on a prefix longer than 32.
    pub fn new(destination: Ipv4Addr, prefix_len: u8, router: Ipv4Addr) -> Result<Self, DhcpError> {
        if prefix_len > 32 {
            return Err(DhcpError::BadRoute);
        }
        let mask = u32::MAX
            .checked_shl(32 - u32::from(prefix_len))
            .unwrap_or(0);
        Ok(Self {
            destination: Ipv4Addr::from(u32::from(destination) & mask),
            prefix_len,
            router,
        })
    }

    /// The destination network (host bits clear).
    pub fn destination(&self) -> Ipv4Addr {
        self.destination
    }

    /// The prefix length, 0 to 32.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The router for the destination.
    pub fn router(&self) -> Ipv4Addr {
        self.router
    }

    /// RFC 3442 §3: significant octets of the destination, ceil(prefix / 8).
    fn significant_octets(&self) -> usize {
        usize::from(self.prefix_len).div_ceil(8)
    }
}

/// Appends `routes` in RFC 3442 encoding: width, significant destination octets, router.
pub fn encode_classless_routes(routes: &[ClasslessRoute], out: &mut Vec<u8>) {
    for route in routes {
        out.push(route.prefix_len);
        let octets = route.destination.octets();
        out.extend(octets.iter().take(route.significant_octets()));
        out.extend_from_slice(&route.router.octets());
    }
}

/// Reads an RFC 3442 route list (the concatenated value of option 121 or 249).
pub fn decode_classless_routes(mut data: &[u8]) -> Result<Vec<ClasslessRoute>, DhcpError> {
    let mut routes = Vec::new();
    while let Some((&prefix_len, rest)) = data.split_first() {
        if prefix_len > 32 {
            return Err(DhcpError::BadRoute);
        }
        let significant = usize::from(prefix_len).div_ceil(8);
        let (destination, rest) = rest
            .split_at_checked(significant)
            .ok_or(DhcpError::BadRoute)?;
        let (router, rest) = rest.split_at_checked(4).ok_or(DhcpError::BadRoute)?;
        let mut octets = [0u8; 4];
        octets
            .iter_mut()
            .zip(destination)
            .for_each(|(o, d)| *o = *d);
        routes.push(ClasslessRoute::new(
            Ipv4Addr::from(octets),
            prefix_len,
            super::ipv4_at(router, 0).ok_or(DhcpError::BadRoute)?,
        )?);
        data = rest;
    }
    Ok(routes)
}
