//! IPCP option semantics (RFC 1332, DNS from RFC 1877) for the server and the client.

use std::net::Ipv4Addr;

use rand_core::Rng;

use crate::{
    fsm::{NotConverging, OptionPolicy, Verdict},
    packet::{ConfigOption, write_option},
};

/// Server side: offers its own address, assigns the peer's, hands out DNS.
#[derive(Debug)]
pub(crate) struct IpcpServerPolicy {
    local: Ipv4Addr,
    /// The address the allocator gave this session.
    pub(crate) peer: Ipv4Addr,
    dns: [Option<Ipv4Addr>; 2],
    /// The peer rejected our IP-Address option: send an empty request.
    local_rejected: bool,
}

impl IpcpServerPolicy {
    pub(crate) fn new(local: Ipv4Addr, peer: Ipv4Addr, dns: [Option<Ipv4Addr>; 2]) -> Self {
        Self {
            local,
            peer,
            dns,
            local_rejected: false,
        }
    }

    fn check_option(&self, option: &ConfigOption<'_>) -> Answer {
        let Ok(value) = <[u8; 4]>::try_from(option.value) else {
            return Answer::Reject;
        };
        let requested = Ipv4Addr::from(value);
        let wanted = match option.kind {
            OPT_IP_ADDRESS => Some(self.peer),
            OPT_PRIMARY_DNS => self.dns[0],
            OPT_SECONDARY_DNS => self.dns[1],
            // IP-Compression-Protocol (VJ is useless over TLS), NBNS (no WINS configured),
            // deprecated IP-Addresses and anything unknown.
            _ => return Answer::Reject,
        };
        match wanted {
            Some(addr) if addr == requested => Answer::Ack,
            Some(addr) => Answer::Nak(addr),
            // RFC 1877: asking for a server we do not have is answered with a Reject.
            None => Answer::Reject,
        }
    }
}

impl OptionPolicy for IpcpServerPolicy {
    fn reset(&mut self, _rng: &mut dyn Rng) {
        self.local_rejected = false;
    }

    fn request(&mut self, out: &mut Vec<u8>) {
        if !self.local_rejected {
            write_option(OPT_IP_ADDRESS, &self.local.octets(), out);
        }
    }

    fn check_request(
        &mut self,
        options: &[ConfigOption<'_>],
        reject_if_disagree: bool,
        _rng: &mut dyn Rng,
    ) -> Verdict {
        let mut naks = Vec::new();
        let mut rejects = Vec::new();
        for option in options {
            match self.check_option(option) {
                Answer::Ack => {}
                // The address is not negotiable: a Reject would leave the peer without one.
                Answer::Nak(addr) if !reject_if_disagree || option.kind == OPT_IP_ADDRESS => {
                    write_option(option.kind, &addr.octets(), &mut naks);
                }
                Answer::Nak(_) | Answer::Reject => option.write(&mut rejects),
            }
        }
        if !rejects.is_empty() {
            return Verdict::Reject(rejects);
        }
        if !options.iter().any(|o| o.kind == OPT_IP_ADDRESS) && !reject_if_disagree {
            // RFC 1661 §5.3: a Nak may suggest an option the peer did not include.
            write_option(OPT_IP_ADDRESS, &self.peer.octets(), &mut naks);
        }
        if naks.is_empty() {
            Verdict::Ack
        } else {
            Verdict::Nak(naks)
        }
    }

    fn nakked(
        &mut self,
        _options: &[ConfigOption<'_>],
        _rng: &mut dyn Rng,
    ) -> Result<(), NotConverging> {
        // Our own address is configured, not negotiable: ask again with it.
        Ok(())
    }

    fn rejected(&mut self, options: &[ConfigOption<'_>]) -> Result<(), NotConverging> {
        if options.iter().any(|o| o.kind == OPT_IP_ADDRESS) {
            self.local_rejected = true;
        }
        Ok(())
    }
}

/// Client side: asks for 0.0.0.0 and DNS, takes the values the server Naks with.
#[derive(Debug)]
pub(crate) struct IpcpClientPolicy {
    /// Our address: 0.0.0.0 until the server names one.
    pub(crate) local: Ipv4Addr,
    /// DNS servers; `None` while unknown or once rejected.
    pub(crate) dns: [Option<Ipv4Addr>; 2],
    ask_dns: [bool; 2],
    /// The server's own address from its request.
    pub(crate) peer: Option<Ipv4Addr>,
}

impl IpcpClientPolicy {
    pub(crate) fn new(request_dns: bool) -> Self {
        Self {
            local: Ipv4Addr::UNSPECIFIED,
            dns: [None; 2],
            ask_dns: [request_dns; 2],
            peer: None,
        }
    }
}

impl OptionPolicy for IpcpClientPolicy {
    fn reset(&mut self, _rng: &mut dyn Rng) {}

    fn request(&mut self, out: &mut Vec<u8>) {
        write_option(OPT_IP_ADDRESS, &self.local.octets(), out);
        for (i, kind) in [OPT_PRIMARY_DNS, OPT_SECONDARY_DNS].into_iter().enumerate() {
            if self.ask_dns[i] {
                let addr = self.dns[i].unwrap_or(Ipv4Addr::UNSPECIFIED);
                write_option(kind, &addr.octets(), out);
            }
        }
    }

    fn check_request(
        &mut self,
        options: &[ConfigOption<'_>],
        _reject_if_disagree: bool,
        _rng: &mut dyn Rng,
    ) -> Verdict {
        let mut rejects = Vec::new();
        for option in options {
            match (option.kind, <[u8; 4]>::try_from(option.value)) {
                (OPT_IP_ADDRESS, Ok(value)) => self.peer = Some(Ipv4Addr::from(value)),
                _ => option.write(&mut rejects),
            }
        }
        if rejects.is_empty() {
            Verdict::Ack
        } else {
            Verdict::Reject(rejects)
        }
    }

    fn nakked(
        &mut self,
        options: &[ConfigOption<'_>],
        _rng: &mut dyn Rng,
    ) -> Result<(), NotConverging> {
        for option in options {
            let Ok(value) = <[u8; 4]>::try_from(option.value) else {
                continue;
            };
            let addr = Ipv4Addr::from(value);
            match option.kind {
                OPT_IP_ADDRESS => self.local = addr,
                OPT_PRIMARY_DNS if self.ask_dns[0] => self.dns[0] = Some(addr),
                OPT_SECONDARY_DNS if self.ask_dns[1] => self.dns[1] = Some(addr),
                _ => {}
            }
        }
        Ok(())
    }

    fn rejected(&mut self, options: &[ConfigOption<'_>]) -> Result<(), NotConverging> {
        for option in options {
            match option.kind {
                // Without an address there is nothing to tunnel.
                OPT_IP_ADDRESS => return Err(NotConverging),
                OPT_PRIMARY_DNS => (self.ask_dns[0], self.dns[0]) = (false, None),
                OPT_SECONDARY_DNS => (self.ask_dns[1], self.dns[1]) = (false, None),
                _ => {}
            }
        }
        Ok(())
    }
}

enum Answer {
    Ack,
    Nak(Ipv4Addr),
    Reject,
}

/// IP-Address (RFC 1332 §3.3).
const OPT_IP_ADDRESS: u8 = 3;
/// Primary-DNS-Address (RFC 1877 §1.1).
const OPT_PRIMARY_DNS: u8 = 129;
/// Secondary-DNS-Address (RFC 1877 §1.3).
const OPT_SECONDARY_DNS: u8 = 131;

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::packet::parse_options;

    const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 7);
    const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 53);

    fn check(policy: &mut impl OptionPolicy, options: &[u8]) -> Verdict {
        let mut rng = ChaCha20Rng::seed_from_u64(0);
        policy.check_request(&parse_options(options).unwrap(), false, &mut rng)
    }

    fn option(kind: u8, addr: Ipv4Addr) -> Vec<u8> {
        let mut out = Vec::new();
        write_option(kind, &addr.octets(), &mut out);
        out
    }

    fn server() -> IpcpServerPolicy {
        IpcpServerPolicy::new(LOCAL, PEER, [Some(DNS), None])
    }

    #[test]
    fn server_requests_its_own_address() {
        let mut out = Vec::new();
        server().request(&mut out);
        assert_eq!(out, option(OPT_IP_ADDRESS, LOCAL));
    }

    #[test]
    fn server_naks_zero_or_wrong_addresses_with_the_assigned_one_and_configured_dns() {
        let mut request = option(OPT_IP_ADDRESS, Ipv4Addr::UNSPECIFIED);
        request.extend(option(OPT_PRIMARY_DNS, Ipv4Addr::UNSPECIFIED));
        let mut nak = option(OPT_IP_ADDRESS, PEER);
        nak.extend(option(OPT_PRIMARY_DNS, DNS));
        assert_eq!(check(&mut server(), &request), Verdict::Nak(nak));

        let wrong = option(OPT_IP_ADDRESS, Ipv4Addr::new(192, 168, 1, 9));
        let nak = option(OPT_IP_ADDRESS, PEER);
        assert_eq!(check(&mut server(), &wrong), Verdict::Nak(nak));
    }

    #[test]
    fn server_acks_the_assigned_address_and_dns() {
        let mut request = option(OPT_IP_ADDRESS, PEER);
        request.extend(option(OPT_PRIMARY_DNS, DNS));
        assert_eq!(check(&mut server(), &request), Verdict::Ack);
    }

    #[test]
    fn server_rejects_unconfigured_dns_nbns_and_ip_compression() {
        let mut request = option(OPT_IP_ADDRESS, PEER);
        let mut rejected = option(OPT_SECONDARY_DNS, Ipv4Addr::UNSPECIFIED);
        rejected.extend(option(130, Ipv4Addr::UNSPECIFIED));
        rejected.extend([0x02, 0x06, 0x00, 0x2D, 0x0F, 0x01]);
        request.extend(&rejected);
        assert_eq!(check(&mut server(), &request), Verdict::Reject(rejected));
    }

    #[test]
    fn server_suggests_an_address_to_a_peer_that_asked_for_none() {
        let nak = option(OPT_IP_ADDRESS, PEER);
        assert_eq!(check(&mut server(), &[]), Verdict::Nak(nak));
    }

    #[test]
    fn client_takes_the_naked_address_and_dns_and_drops_rejected_dns() {
        let mut rng = ChaCha20Rng::seed_from_u64(0);
        let mut client = IpcpClientPolicy::new(true);
        let mut nak = option(OPT_IP_ADDRESS, PEER);
        nak.extend(option(OPT_PRIMARY_DNS, DNS));
        client
            .nakked(&parse_options(&nak).unwrap(), &mut rng)
            .unwrap();
        let reject = option(OPT_SECONDARY_DNS, Ipv4Addr::UNSPECIFIED);
        client.rejected(&parse_options(&reject).unwrap()).unwrap();
        let mut request = Vec::new();
        client.request(&mut request);
        let mut expected = option(OPT_IP_ADDRESS, PEER);
        expected.extend(option(OPT_PRIMARY_DNS, DNS));
        assert_eq!(request, expected);
        assert_eq!(client.dns, [Some(DNS), None]);
    }

    #[test]
    fn client_cannot_do_without_an_address() {
        let mut client = IpcpClientPolicy::new(false);
        let reject = option(OPT_IP_ADDRESS, Ipv4Addr::UNSPECIFIED);
        assert!(client.rejected(&parse_options(&reject).unwrap()).is_err());
    }
}
