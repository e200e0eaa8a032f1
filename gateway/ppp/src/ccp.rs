//! CCP (RFC 1962) as the Windows client sends it: one Configure-Request proposing MPPE/MPPC
//! after authentication, although SSTP needs no PPP-level encryption. Only the client plays it;
//! the server Protocol-Rejects CCP (windows-client.md §1.8, traps #8 and #9).

use rand_core::Rng;

use crate::{
    fsm::{NotConverging, OptionPolicy, Verdict},
    packet::{ConfigOption, write_option},
};

/// The Windows client's CCP request: option 18 (MPPE/MPPC, RFC 3078 §2.1) with the
/// supported-bits value `01 00 00 40` (stateless mode, 128-bit keys), from OGI's test vector
/// `01 07 00 0a 12 06 01 00 00 40` (windows-client.md §1.8).
#[derive(Debug, Default)]
pub(crate) struct WindowsCcpPolicy {
    rejected: bool,
}

impl OptionPolicy for WindowsCcpPolicy {
    fn reset(&mut self, _rng: &mut dyn Rng) {
        self.rejected = false;
    }

    fn request(&mut self, out: &mut Vec<u8>) {
        if !self.rejected {
            write_option(OPT_MPPE, &MPPE_SUPPORTED_BITS, out);
        }
    }

    fn check_request(
        &mut self,
        options: &[ConfigOption<'_>],
        _reject_if_disagree: bool,
        _rng: &mut dyn Rng,
    ) -> Verdict {
        // We compress nothing: every option a server proposes is refused.
        let mut rejects = Vec::new();
        for option in options {
            option.write(&mut rejects);
        }
        if rejects.is_empty() {
            Verdict::Ack
        } else {
            Verdict::Reject(rejects)
        }
    }

    fn nakked(
        &mut self,
        _options: &[ConfigOption<'_>],
        _rng: &mut dyn Rng,
    ) -> Result<(), NotConverging> {
        Ok(())
    }

    fn rejected(&mut self, _options: &[ConfigOption<'_>]) -> Result<(), NotConverging> {
        // MPPE was all we wanted: nothing left to negotiate.
        self.rejected = true;
        Err(NotConverging)
    }
}

/// CCP option 18: Microsoft Point-to-Point Compression/Encryption (RFC 2118, RFC 3078).
const OPT_MPPE: u8 = 18;
/// The supported bits Windows proposes (see [`WindowsCcpPolicy`]).
const MPPE_SUPPORTED_BITS: [u8; 4] = [0x01, 0x00, 0x00, 0x40];
