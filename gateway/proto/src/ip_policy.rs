//! What the server lets out of the tunnel, decided here where the peer's address is known (as
//! firezone's `GatewayState` decides its own policy), so the I/O shell only forwards:
//!
//! - An IPv4 packet only from the address PPP gave the peer: a client must not spoof another
//!   session's address, or anyone's. Anything that is not IPv4 or IPv6 goes the same way.
//! - A DHCPINFORM to this server (broadcast or its tunnel address) is answered into the tunnel
//!   when the configuration has something to tell (split-tunnel routes, a DNS suffix: Windows RAS
//!   asks for them, windows-client.md §1.9) and does not leave the tunnel. Without a
//!   configuration it is an IP packet like any other.
//! - IPv6 passes as it came; it is only queued once IPv6CP is up.
//!
//! The DHCP codec itself stays hand-written in `sstp_ppp::dhcp_inform`, beside the IPv4 helpers
//! it uses.

use std::net::Ipv4Addr;

use sstp_ppp::{
    dhcp_inform::{self, InformConfig},
    ipv4,
};

/// IP packets from the peer that the policy kept in the tunnel, since the caller last asked
/// ([`crate::ServerConnection::take_ip_policy`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IpPolicyCounts {
    /// Dropped: the source was not the peer's address (or the packet was not IP).
    pub foreign_source: u64,
    /// DHCPINFORMs answered into the tunnel.
    pub dhcp_informs_answered: u64,
}

/// What becomes of one packet from the peer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The caller gets it.
    Pass,
    /// Dropped for its source address.
    ForeignSource,
    /// A DHCPINFORM; this DHCPACK goes back to the peer instead.
    Answer(Vec<u8>),
}

/// The verdict on `packet` from a peer whose address is `peer` (none before IPCP), with `inform`
/// what DHCPINFORMs are answered with.
pub(crate) fn judge(
    packet: &[u8],
    peer: Option<Ipv4Addr>,
    inform: Option<&InformConfig>,
) -> Verdict {
    match packet.first().map(|first| first >> 4) {
        Some(ipv4::VERSION) => {}
        Some(6) => return Verdict::Pass,
        _ => return Verdict::ForeignSource,
    }
    if peer.is_none_or(|peer| ipv4::source(packet) != Some(peer)) {
        return Verdict::ForeignSource;
    }
    match inform.and_then(|config| answer_inform(config, packet)) {
        Some(reply) => Verdict::Answer(reply),
        None => Verdict::Pass,
    }
}

/// The DHCPACK for `packet` if it is a DHCPINFORM to this server and there is something to
/// answer with.
fn answer_inform(config: &InformConfig, packet: &[u8]) -> Option<Vec<u8>> {
    if !config.answers() {
        return None;
    }
    let inform = dhcp_inform::parse_inform(packet).ok()?;
    if !(inform.destination.is_broadcast() || inform.destination == config.server) {
        return None;
    }
    let mut reply = Vec::new();
    match dhcp_inform::build_ack(&inform, config, &mut reply) {
        Ok(()) => {
            tracing::debug!(routes = config.routes.len(), "answered DHCPINFORM");
            Some(reply)
        }
        Err(error) => {
            tracing::debug!(%error, "DHCPINFORM not answered");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::{Verdict, judge};

    const PEER: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 10);

    fn ipv4_from(source: Ipv4Addr) -> Vec<u8> {
        let mut packet = vec![0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0];
        packet.extend_from_slice(&source.octets());
        packet.extend_from_slice(&[10, 8, 0, 1]);
        packet
    }

    #[test]
    fn only_the_peers_own_ipv4_source_and_ipv6_pass() {
        let own = ipv4_from(PEER);
        let mut ipv6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        ipv6.resize(48, 0);
        let table: [(&[u8], Option<Ipv4Addr>, Verdict); 7] = [
            (&own, Some(PEER), Verdict::Pass),
            (&own, None, Verdict::ForeignSource),
            (
                &ipv4_from(Ipv4Addr::new(10, 8, 0, 11)),
                Some(PEER),
                Verdict::ForeignSource,
            ),
            (&own[..19], Some(PEER), Verdict::ForeignSource),
            (&ipv6, Some(PEER), Verdict::Pass),
            (&[], Some(PEER), Verdict::ForeignSource),
            (&[0x15; 20], Some(PEER), Verdict::ForeignSource),
        ];
        for (packet, peer, expected) in table {
            assert_eq!(
                judge(packet, peer, None),
                expected,
                "{packet:?} from {peer:?}"
            );
        }
    }
}
