//! How a connection that never carried IP is counted: a pure function of where setup stood,
//! why the connection closed, and what the session already knew, so a table test covers it.

use sstp_proto::{CloseReason, http::Rejection};

use crate::metrics::{RejectReason, SessionResult};

/// Where setup stood when the connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Before a complete HTTP request.
    Preamble,
    /// SSTP and PPP negotiating.
    Negotiation,
}

/// The metric a failed setup goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SetupOutcome {
    /// `sstp_connections_rejected_total{reason}`: refused before a session existed.
    Rejected(RejectReason),
    /// `sstp_sessions_total{result}`: a session that did not come up.
    Failed(SessionResult),
}

/// How setup that ended at `stage`, closing for `reason`, counts. `known` is what the session
/// learnt on the way (a refused login, an address it could not route) and wins over what the
/// close reason suggests; before the preamble there is nothing to know.
pub(super) fn setup_outcome(
    stage: Stage,
    reason: &CloseReason,
    known: Option<SessionResult>,
) -> SetupOutcome {
    match (stage, reason) {
        (Stage::Preamble, CloseReason::HttpRejected(Rejection::Busy)) => {
            SetupOutcome::Rejected(RejectReason::MaxSessions)
        }
        (Stage::Preamble, CloseReason::HttpRejected(_)) => {
            SetupOutcome::Rejected(RejectReason::InvalidPreamble)
        }
        (Stage::Preamble, _) => SetupOutcome::Failed(SessionResult::ClientAborted),
        (Stage::Negotiation, reason) => {
            SetupOutcome::Failed(known.unwrap_or_else(|| negotiation_result(reason)))
        }
    }
}

/// What a close during negotiation says by itself. No wildcard: a new close reason must be
/// placed here before this compiles.
fn negotiation_result(reason: &CloseReason) -> SessionResult {
    match reason {
        CloseReason::NegotiationTimeout | CloseReason::HelloTimeout => SessionResult::Timeout,
        CloseReason::TransportClosed
        | CloseReason::PeerAborted(_)
        | CloseReason::PeerDisconnected
        | CloseReason::LocalDisconnect => SessionResult::ClientAborted,
        CloseReason::HttpRejected(_)
        | CloseReason::HttpResponse(_)
        | CloseReason::Framing(_)
        | CloseReason::InvalidMessage(_)
        | CloseReason::UnexpectedMessage(_)
        | CloseReason::RetryCountExceeded
        | CloseReason::CryptoBinding(_)
        | CloseReason::NoCommonHashProtocol
        | CloseReason::Ppp(_) => SessionResult::NegotiationFailed,
    }
}

#[cfg(test)]
mod tests {
    use sstp_proto::{CloseReason as Close, http::Rejection};

    use super::{SetupOutcome, Stage, setup_outcome};
    use crate::metrics::{RejectReason as Reject, SessionResult as Result};

    #[test]
    fn every_stage_and_reason_counts_where_the_table_says() {
        use SetupOutcome::{Failed, Rejected};
        let table = [
            // Before the preamble: refusals are rejections, anything else a client that left.
            (
                Stage::Preamble,
                Close::HttpRejected(Rejection::Busy),
                None,
                Rejected(Reject::MaxSessions),
            ),
            (
                Stage::Preamble,
                Close::HttpRejected(Rejection::Malformed),
                None,
                Rejected(Reject::InvalidPreamble),
            ),
            (
                Stage::Preamble,
                Close::HttpRejected(Rejection::NotFound),
                None,
                Rejected(Reject::InvalidPreamble),
            ),
            (
                Stage::Preamble,
                Close::TransportClosed,
                None,
                Failed(Result::ClientAborted),
            ),
            (
                Stage::Preamble,
                Close::RetryCountExceeded,
                None,
                Failed(Result::ClientAborted),
            ),
            // What the session knew does not apply before the preamble.
            (
                Stage::Preamble,
                Close::TransportClosed,
                Some(Result::AuthFailed),
                Failed(Result::ClientAborted),
            ),
            // During negotiation: the close reason, unless the session knew better.
            (
                Stage::Negotiation,
                Close::NegotiationTimeout,
                None,
                Failed(Result::Timeout),
            ),
            (
                Stage::Negotiation,
                Close::HelloTimeout,
                None,
                Failed(Result::Timeout),
            ),
            (
                Stage::Negotiation,
                Close::TransportClosed,
                None,
                Failed(Result::ClientAborted),
            ),
            (
                Stage::Negotiation,
                Close::PeerAborted(None),
                None,
                Failed(Result::ClientAborted),
            ),
            (
                Stage::Negotiation,
                Close::PeerDisconnected,
                None,
                Failed(Result::ClientAborted),
            ),
            (
                Stage::Negotiation,
                Close::LocalDisconnect,
                None,
                Failed(Result::ClientAborted),
            ),
            (
                Stage::Negotiation,
                Close::RetryCountExceeded,
                None,
                Failed(Result::NegotiationFailed),
            ),
            (
                Stage::Negotiation,
                Close::NoCommonHashProtocol,
                None,
                Failed(Result::NegotiationFailed),
            ),
            (
                Stage::Negotiation,
                Close::LocalDisconnect,
                Some(Result::AuthFailed),
                Failed(Result::AuthFailed),
            ),
            (
                Stage::Negotiation,
                Close::LocalDisconnect,
                Some(Result::NegotiationFailed),
                Failed(Result::NegotiationFailed),
            ),
            (
                Stage::Negotiation,
                Close::TransportClosed,
                Some(Result::Timeout),
                Failed(Result::Timeout),
            ),
        ];
        for (stage, reason, known, expected) in table {
            assert_eq!(
                setup_outcome(stage, &reason, known),
                expected,
                "{stage:?}, {}, known {known:?}",
                reason.metric_label()
            );
        }
    }
}
