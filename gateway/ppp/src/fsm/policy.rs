//! What the automaton asks of a control protocol: the meaning of its options (RFC 1661 §4
//! leaves it to each protocol), and the verdicts it gives.

use rand_core::Rng;

use crate::packet::ConfigOption;

/// The answer to a peer's Configure-Request: option lists are in wire form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Ack,
    Nak(Vec<u8>),
    Reject(Vec<u8>),
}

/// The peer insists on something this side cannot accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotConverging;

/// What a control protocol's options mean.
pub(crate) trait OptionPolicy {
    /// Starts a fresh negotiation (called on irc + scr from a non-negotiating state).
    fn reset(&mut self, rng: &mut dyn Rng);
    /// Writes our Configure-Request options.
    fn request(&mut self, out: &mut Vec<u8>);
    /// Judges the peer's Configure-Request. With `reject_if_disagree` (Max-Failure reached),
    /// anything that would be Nak'd must be Rejected instead or Acked.
    fn check_request(
        &mut self,
        options: &[ConfigOption<'_>],
        reject_if_disagree: bool,
        rng: &mut dyn Rng,
    ) -> Verdict;
    /// The peer acknowledged our request.
    fn acked(&mut self) {}
    /// The peer Nak'd our request with these suggestions.
    fn nakked(
        &mut self,
        options: &[ConfigOption<'_>],
        rng: &mut dyn Rng,
    ) -> Result<(), NotConverging>;
    /// The peer Rejected these options of our request.
    fn rejected(&mut self, options: &[ConfigOption<'_>]) -> Result<(), NotConverging>;
}
