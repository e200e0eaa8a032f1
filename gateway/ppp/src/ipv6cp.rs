//! IPv6CP option semantics (RFC 5072): each side gets a link-local interface identifier.
//! The negotiation is symmetric, so server and client share this policy.

use rand_core::Rng;

use crate::{
    fsm::{NotConverging, OptionPolicy, Verdict},
    packet::{ConfigOption, write_option},
};

#[derive(Debug, Default)]
pub(crate) struct Ipv6cpPolicy {
    /// Our interface identifier.
    pub(crate) local_id: [u8; 8],
    /// The peer's identifier, once we Acked one.
    pub(crate) peer_id: Option<[u8; 8]>,
    /// The peer rejected our Interface-Identifier option.
    local_rejected: bool,
}

impl Ipv6cpPolicy {
    /// An identifier that is neither zero nor ours (RFC 5072 §4.1).
    fn fresh_id(&self, rng: &mut dyn Rng) -> [u8; 8] {
        loop {
            let id = rng.next_u64().to_be_bytes();
            if id != [0; 8] && id != self.local_id {
                return id;
            }
        }
    }
}

impl OptionPolicy for Ipv6cpPolicy {
    fn reset(&mut self, rng: &mut dyn Rng) {
        self.local_id = self.fresh_id(rng);
        self.local_rejected = false;
    }

    fn request(&mut self, out: &mut Vec<u8>) {
        if !self.local_rejected {
            write_option(OPT_INTERFACE_IDENTIFIER, &self.local_id, out);
        }
    }

    fn check_request(
        &mut self,
        options: &[ConfigOption<'_>],
        reject_if_disagree: bool,
        rng: &mut dyn Rng,
    ) -> Verdict {
        let mut naks = Vec::new();
        let mut rejects = Vec::new();
        self.peer_id = None;
        for option in options {
            match (option.kind, <[u8; 8]>::try_from(option.value)) {
                (OPT_INTERFACE_IDENTIFIER, Ok(id)) if id != [0; 8] && id != self.local_id => {
                    self.peer_id = Some(id);
                }
                (OPT_INTERFACE_IDENTIFIER, Ok(_)) if !reject_if_disagree => {
                    // Zero or a duplicate of ours: suggest a usable one (RFC 5072 §4.1).
                    write_option(OPT_INTERFACE_IDENTIFIER, &self.fresh_id(rng), &mut naks);
                }
                // IPv6-Compression-Protocol (RFC 5072 §4.2) and anything unknown.
                _ => option.write(&mut rejects),
            }
        }
        if !rejects.is_empty() {
            Verdict::Reject(rejects)
        } else if !naks.is_empty() {
            Verdict::Nak(naks)
        } else {
            Verdict::Ack
        }
    }

    fn nakked(
        &mut self,
        options: &[ConfigOption<'_>],
        rng: &mut dyn Rng,
    ) -> Result<(), NotConverging> {
        for option in options {
            if option.kind != OPT_INTERFACE_IDENTIFIER {
                continue;
            }
            self.local_id = match <[u8; 8]>::try_from(option.value) {
                Ok(id) if id != [0; 8] && Some(id) != self.peer_id => id,
                _ => self.fresh_id(rng),
            };
        }
        Ok(())
    }

    fn rejected(&mut self, options: &[ConfigOption<'_>]) -> Result<(), NotConverging> {
        if options.iter().any(|o| o.kind == OPT_INTERFACE_IDENTIFIER) {
            self.local_rejected = true;
        }
        Ok(())
    }
}

/// Interface-Identifier (RFC 5072 §4.1).
const OPT_INTERFACE_IDENTIFIER: u8 = 1;

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::packet::parse_options;

    fn policy(rng: &mut ChaCha20Rng) -> Ipv6cpPolicy {
        let mut policy = Ipv6cpPolicy::default();
        policy.reset(rng);
        policy
    }

    fn id_option(id: [u8; 8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_option(OPT_INTERFACE_IDENTIFIER, &id, &mut out);
        out
    }

    #[test]
    fn zero_or_duplicate_identifiers_are_naked_with_a_fresh_one() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let mut policy = policy(&mut rng);
        for id in [[0; 8], policy.local_id] {
            let request = id_option(id);
            let verdict = policy.check_request(&parse_options(&request).unwrap(), false, &mut rng);
            let Verdict::Nak(nak) = verdict else {
                panic!("expected a Nak, got {verdict:?}");
            };
            let suggested = &nak[2..];
            assert_ne!(suggested, [0; 8]);
            assert_ne!(suggested, policy.local_id);
        }
    }

    #[test]
    fn a_distinct_identifier_is_acked_and_compression_rejected() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let mut policy = policy(&mut rng);
        let peer = [1, 2, 3, 4, 5, 6, 7, 8];
        let request = id_option(peer);
        let verdict = policy.check_request(&parse_options(&request).unwrap(), false, &mut rng);
        assert_eq!(verdict, Verdict::Ack);
        assert_eq!(policy.peer_id, Some(peer));
        let compression = [0x02, 0x04, 0x00, 0x4F];
        let verdict = policy.check_request(&parse_options(&compression).unwrap(), false, &mut rng);
        assert_eq!(verdict, Verdict::Reject(compression.to_vec()));
    }

    #[test]
    fn a_nak_changes_our_identifier_to_the_suggestion() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let mut policy = policy(&mut rng);
        let suggested = [9; 8];
        let nak = id_option(suggested);
        policy
            .nakked(&parse_options(&nak).unwrap(), &mut rng)
            .unwrap();
        assert_eq!(policy.local_id, suggested);
    }
}
