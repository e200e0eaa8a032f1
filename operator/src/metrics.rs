//! The operator's own metrics (prefix `sstp_operator_`): reconciles, errors, durations, writes,
//! leadership and the session census. Cloning shares the registry.

use std::time::Instant;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Every metric of the operator.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    errors: IntCounterVec,
    duration: HistogramVec,
    writes: IntCounterVec,
    leader: IntGauge,
    census_rounds: IntCounter,
    session_queries_failed: IntCounter,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "sstp_operator_reconciles_total",
                "Reconciles run, by controller",
            ),
            &["controller"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "sstp_operator_reconcile_errors_total",
                "Failed reconciles, by controller and error",
            ),
            &["controller", "error"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "sstp_operator_reconcile_duration_seconds",
                "Reconcile duration",
            ),
            &["controller"],
        )
        .expect("valid metric");
        let writes = IntCounterVec::new(
            Opts::new(
                "sstp_operator_writes_total",
                "Objects written (applied or created), by kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let leader = IntGauge::new(
            "sstp_operator_leader",
            "1 while this replica holds the lease",
        )
        .expect("valid metric");
        let census_rounds = IntCounter::new(
            "sstp_operator_session_census_rounds_total",
            "Rounds of the session census (every gateway pod asked for its sessions), on the leader",
        )
        .expect("valid metric");
        let session_queries_failed = IntCounter::new(
            "sstp_operator_session_queries_failed_total",
            "Gateway pods whose sessions the census could not read (GET /sessions on the admin port)",
        )
        .expect("valid metric");
        for collector in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(duration.clone()),
            Box::new(writes.clone()),
            Box::new(leader.clone()),
            Box::new(census_rounds.clone()),
            Box::new(session_queries_failed.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        // Every controller's series exist from the start, at zero. Prometheus' increase() needs two
        // samples of a series, so a counter born at 1 on the first failure would never alert.
        for controller in crate::controller::CONTROLLERS {
            reconciles.with_label_values(&[controller]);
            duration.with_label_values(&[controller]);
            for error in crate::Error::METRIC_LABELS {
                errors.with_label_values(&[controller, error]);
            }
        }
        Self {
            registry,
            reconciles,
            errors,
            duration,
            writes,
            leader,
            census_rounds,
            session_queries_failed,
        }
    }

    /// Starts timing a reconcile of `controller`; the observation happens when the guard drops.
    pub fn reconcile_started(&self, controller: &'static str) -> ReconcileTimer {
        self.reconciles.with_label_values(&[controller]).inc();
        ReconcileTimer {
            metrics: self.clone(),
            controller,
            started: Instant::now(),
        }
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, controller: &'static str, error: &crate::Error) {
        self.errors
            .with_label_values(&[controller, error.metric_label()])
            .inc();
    }

    /// Counts a write of an object of `kind`.
    pub fn wrote(&self, kind: &str) {
        self.writes.with_label_values(&[kind]).inc();
    }

    /// Counts a finished round of the session census.
    pub fn census_round(&self) {
        self.census_rounds.inc();
    }

    /// Counts a gateway pod whose sessions could not be read.
    pub fn session_query_failed(&self) {
        self.session_queries_failed.inc();
    }

    /// Sets the leadership gauge.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Reconciles run so far by `controller`.
    pub fn reconciles(&self, controller: &str) -> u64 {
        self.reconciles.with_label_values(&[controller]).get()
    }

    /// Writes so far, all kinds.
    pub fn writes(&self) -> u64 {
        self.registry
            .gather()
            .iter()
            .filter(|family| family.name() == "sstp_operator_writes_total")
            .flat_map(|family| {
                family
                    .get_metric()
                    .iter()
                    .map(|m| m.get_counter().get_value() as u64)
            })
            .sum()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Observes a reconcile's duration when dropped.
#[derive(Debug)]
pub struct ReconcileTimer {
    metrics: Metrics,
    controller: &'static str,
    started: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.metrics
            .duration
            .with_label_values(&[self.controller])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_controller_and_error_series_is_exported_at_zero_from_the_start() {
        let text = Metrics::new().render();
        for controller in crate::controller::CONTROLLERS {
            assert!(
                text.contains(&format!(
                    "sstp_operator_reconciles_total{{controller=\"{controller}\"}} 0\n"
                )),
                "{text}"
            );
            for error in crate::Error::METRIC_LABELS {
                let series = format!(
                    "sstp_operator_reconcile_errors_total{{controller=\"{controller}\",error=\"{error}\"}} 0\n"
                );
                assert!(text.contains(&series), "no {series} in:\n{text}");
            }
        }
    }

    #[test]
    fn every_error_label_is_one_of_the_exported_values() {
        let errors = [
            crate::Error::MissingField("uid"),
            crate::Error::Render {
                what: "users document",
                problem: "empty".into(),
            },
            crate::Error::Serialize(serde_json::from_str::<u8>("x").expect_err("not a number")),
            crate::Error::Kube(kube::Error::LinesCodecMaxLineLengthExceeded),
        ];
        for error in &errors {
            assert!(
                crate::Error::METRIC_LABELS.contains(&error.metric_label()),
                "{error}"
            );
        }
    }
}
