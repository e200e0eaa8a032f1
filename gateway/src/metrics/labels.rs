//! Label values of each metric enum, and a small helper that registers metric families.

use prometheus::{
    Counter, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use super::{
    AuthFailureReason, ClientDropReason, Direction, RejectReason, ReloadResult, SessionResult,
};

impl SessionResult {
    /// Every value, for pre-creating series.
    pub const ALL: [Self; 5] = [
        Self::Established,
        Self::AuthFailed,
        Self::NegotiationFailed,
        Self::Timeout,
        Self::ClientAborted,
    ];

    /// The `result` label value.
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::Established => "established",
            Self::AuthFailed => "auth_failed",
            Self::NegotiationFailed => "negotiation_failed",
            Self::Timeout => "timeout",
            Self::ClientAborted => "client_aborted",
        }
    }
}

impl AuthFailureReason {
    /// Every value, for pre-creating series.
    pub const ALL: [Self; 9] = [
        Self::UnknownUser,
        Self::BadCredentials,
        Self::Disabled,
        Self::Expired,
        Self::SessionLimit,
        Self::AddressExhausted,
        Self::GatewayFull,
        Self::Throttled,
        Self::MethodRefused,
    ];

    /// The `reason` label value.
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::UnknownUser => "unknown_user",
            Self::BadCredentials => "bad_credentials",
            Self::Disabled => "disabled",
            Self::Expired => "expired",
            Self::SessionLimit => "session_limit",
            Self::AddressExhausted => "address_exhausted",
            Self::GatewayFull => "gateway_full",
            Self::Throttled => "throttled",
            Self::MethodRefused => "method_refused",
        }
    }
}

impl Direction {
    /// Every value, for pre-creating series.
    pub const ALL: [Self; 2] = [Self::FromClient, Self::ToClient];

    /// The `direction` label value.
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::FromClient => "from_client",
            Self::ToClient => "to_client",
        }
    }
}

impl RejectReason {
    /// Every value, for pre-creating series.
    pub const ALL: [Self; 11] = [
        Self::MaxSessions,
        Self::PerSourceLimit,
        Self::PendingEvicted,
        Self::UntrustedProxyHeader,
        Self::TlsHandshakeFailed,
        Self::InvalidSni,
        Self::TlsHandshakeTimeout,
        Self::InvalidPreamble,
        Self::PreambleTimeout,
        Self::InvalidProxyHeader,
        Self::ShuttingDown,
    ];

    /// The `reason` label value.
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::MaxSessions => "max_sessions",
            Self::PerSourceLimit => "per_source_limit",
            Self::PendingEvicted => "pending_evicted",
            Self::UntrustedProxyHeader => "untrusted_proxy_header",
            Self::TlsHandshakeFailed => "tls_handshake_failed",
            Self::InvalidSni => "invalid_sni",
            Self::TlsHandshakeTimeout => "tls_handshake_timeout",
            Self::InvalidPreamble => "invalid_preamble",
            Self::PreambleTimeout => "preamble_timeout",
            Self::InvalidProxyHeader => "invalid_proxy_header",
            Self::ShuttingDown => "shutting_down",
        }
    }
}

impl ClientDropReason {
    /// Every value, for pre-creating series.
    pub const ALL: [Self; 1] = [Self::ForeignSource];

    /// The `reason` label value.
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::ForeignSource => "foreign_source",
        }
    }
}

impl ReloadResult {
    /// Every value, for pre-creating series.
    pub const ALL: [Self; 2] = [Self::Success, Self::Error];

    /// The `result` label value.
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
        }
    }
}

/// Creates metric families and registers them; names and label sets are constants of this
/// module, so a failure here is a programming error caught by every test.
pub(super) struct Registrar<'a>(pub(super) &'a Registry);

impl Registrar<'_> {
    pub(super) fn gauge(&self, name: &str, help: &str) -> IntGauge {
        let gauge = IntGauge::with_opts(Opts::new(name, help)).expect("valid gauge options");
        self.register(Box::new(gauge.clone()));
        gauge
    }

    pub(super) fn gauges(
        &self,
        name: &str,
        help: &str,
        label: &str,
        values: &[&str],
    ) -> IntGaugeVec {
        let vec = IntGaugeVec::new(Opts::new(name, help), &[label]).expect("valid gauge options");
        for value in values {
            vec.with_label_values(&[*value]);
        }
        self.register(Box::new(vec.clone()));
        vec
    }

    pub(super) fn counter(&self, name: &str, help: &str) -> Counter {
        let counter = Counter::with_opts(Opts::new(name, help)).expect("valid counter options");
        self.register(Box::new(counter.clone()));
        counter
    }

    pub(super) fn counters(
        &self,
        name: &str,
        help: &str,
        label: &str,
        values: &[&str],
    ) -> IntCounterVec {
        let vec =
            IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid counter options");
        for value in values {
            vec.with_label_values(&[*value]);
        }
        self.register(Box::new(vec.clone()));
        vec
    }

    /// A counter family whose series are created later, when their label values are known
    /// (the TUN queues, counted at start).
    pub(super) fn counter_table(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter options");
        self.register(Box::new(vec.clone()));
        vec
    }

    pub(super) fn histogram(&self, name: &str, help: &str) -> Histogram {
        let opts = HistogramOpts::new(name, help).buckets(HANDSHAKE_BUCKETS.to_vec());
        let histogram = Histogram::with_opts(opts).expect("valid histogram options");
        self.register(Box::new(histogram.clone()));
        histogram
    }

    fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        self.0
            .register(collector)
            .expect("each metric name is registered once");
    }
}

/// Setup takes a TLS handshake, an HTTP round trip and several PPP round trips: tens of
/// milliseconds on a LAN, seconds over bad mobile links.
const HANDSHAKE_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0];
