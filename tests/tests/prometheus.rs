//! The chart's alerts and dashboard, and the metrics of the gateway and the operator, checked by the
//! real `promtool` and a real Prometheus (built by `tests/prometheus/build`; these tests skip,
//! saying so, when it has not run, and `tests/run` runs it first and makes a missing build fail).
//!
//! The rules are never written down twice: every test renders the chart's PrometheusRule with
//! `helm template` and uses its `spec.groups` as the rule file.
//!
//! - promtool: `check rules` on the rendered rules; `test rules` with `tests/prometheus/rules.test.yaml`,
//!   which must fire and must leave quiet every alert the chart renders.
//! - A real Prometheus (127.0.0.1, 1 s scrapes) scraping a running standalone gateway and the
//!   `sstp-operator` binary against the test control plane: every series the gateway README's
//!   metrics table lists, with each label value, and every metric the operator README lists; the
//!   types from `/api/v1/targets/metadata`; `promtool check metrics` on both `/metrics` texts;
//!   every query of the chart's dashboard returning data.
//! - The rendered rules loaded into a real Prometheus scraping two gateways: the certificate alert
//!   fires for the one serving a certificate that expires in 3 days, not for the one with a year.

mod chart_support;
#[path = "prometheus/processes.rs"]
mod processes;
#[path = "prometheus/rules.rs"]
mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chart_support::{
    TempDir, apply_server_side, apply_yaml, chart_dir, documents, find, get_json, kube_version,
    namespace, operator_binary, repo_dir, succeed, wait_established, wait_until,
};
use serde_json::{Value, json};
use sstp_e2e::{
    ControlPlane, Error,
    gateway_process::{self, GatewayOptions, GatewayProcess},
    netns::TestNet,
    prometheus::{
        self, Binaries, Prometheus,
        documented::{self, Documented},
    },
};

/// The scrape jobs, named as the chart's alerts expect (`metrics.prometheusRule.gatewayJob`).
use processes::*;
use rules::*;

const GATEWAY_JOB: &str = "sstp-gateway";
const OPERATOR_JOB: &str = "sstp-operator";
/// Bounds every wait on Prometheus: a scrape and a rule evaluation each second, so healthy waits
/// take a few seconds; a loaded machine gets room.
const BOUND: Duration = Duration::from_secs(120);
/// `helm template`'s release and namespace; the PrometheusRule is `<release>-sstp-operator`.
const RELEASE: &str = "sstp";
const FULLNAME: &str = "sstp-sstp-operator";
/// How many alerts the chart defines (all on by default).
const ALERTS: usize = 12;

/// The Prometheus binaries, or `None` after saying why the test is skipped.
fn prometheus_or_skip() -> Option<Binaries> {
    match prometheus::binaries() {
        Ok(Some(bins)) => Some(bins),
        Ok(None) => {
            eprintln!(
                "SKIPPED: prometheus and promtool are not built; run tests/prometheus/build \
                 (tests/run does, and then never skips)"
            );
            None
        }
        Err(err) => panic!("{err}"),
    }
}

/// Runs `scenario` with the Prometheus binaries when this process can run a gateway (root: TUN
/// device, nftables) and they are built; otherwise says why it skips. An error fails the test.
fn run_with_a_gateway(scenario: impl FnOnce(&Binaries) -> Result<(), Error>) {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: the gateway needs root (TUN, nftables)");
        return;
    }
    let Some(bins) = prometheus_or_skip() else {
        return;
    };
    if let Err(err) = scenario(&bins) {
        panic!("{err}");
    }
}

/// The label names of a query result series.
fn label_names(series: &Value) -> BTreeSet<String> {
    series["metric"]
        .as_object()
        .map(|labels| labels.keys().cloned().collect())
        .unwrap_or_default()
}

/// Waits until `promql` returns at least one series; returns them.
fn series(prom: &Prometheus, promql: &str) -> Result<Vec<Value>, Error> {
    wait_until(&format!("series for {promql}"), BOUND, || {
        let found = prom.query(promql)?;
        Ok((!found.is_empty()).then_some(found))
    })
}

/// Checks that `job` exposes every metric in `documented` with exactly the documented labels
/// (plus `job`, `instance`, and `le` on buckets) and each documented label value, and that every
/// `sstp_` metric it exposes is documented.
fn check_series(prom: &Prometheus, job: &str, documented: &[Documented]) -> Result<(), Error> {
    let mut labels: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for doc in documented {
        let entry = labels.entry(&doc.name).or_default();
        if let Some((label, _)) = &doc.label {
            entry.insert(label.clone());
        }
    }
    for doc in documented {
        let suffixes: &[&str] = if doc.kind == "histogram" {
            &["_bucket", "_sum", "_count"]
        } else {
            &[""]
        };
        for suffix in suffixes {
            let name = format!("{}{suffix}", doc.name);
            let found = series(prom, &format!("{name}{{job=\"{job}\"}}"))?;
            let mut expected: BTreeSet<String> =
                ["__name__", "instance", "job"].map(str::to_owned).into();
            expected.extend(labels[doc.name.as_str()].iter().cloned());
            if *suffix == "_bucket" {
                expected.insert("le".to_owned());
                assert!(
                    found.iter().any(|s| s["metric"]["le"] == "+Inf"),
                    "{name} has no +Inf bucket: {found:?}"
                );
            }
            for one in &found {
                assert_eq!(label_names(one), expected, "labels of {name}: {one}");
            }
            if let Some((label, values)) = &doc.label {
                let seen: BTreeSet<&str> = found
                    .iter()
                    .map(|s| s["metric"][label.as_str()].as_str().unwrap_or_default())
                    .collect();
                for value in values {
                    assert!(
                        seen.contains(value.as_str()),
                        "{name}{{{label}=\"{value}\"}} is documented but not exposed; exposed: {seen:?}"
                    );
                }
            }
        }
    }
    // The other way round: nothing undocumented.
    let exposed = prom.query(&format!(
        "count by (__name__) ({{job=\"{job}\", __name__=~\"sstp_.+\"}})"
    ))?;
    for one in exposed {
        let name = text(&one["metric"]["__name__"]);
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| documented.iter().any(|d| d.name == *base))
            })
            .unwrap_or(name);
        assert!(
            documented.iter().any(|d| d.name == base),
            "{job} exposes {name}, which its README does not list"
        );
    }
    Ok(())
}

/// Checks the metric types Prometheus recorded for `job` against `documented`.
fn check_types(prom: &Prometheus, job: &str, documented: &[Documented]) -> Result<(), Error> {
    let selector = prometheus::url_encode(&format!("{{job=\"{job}\"}}"));
    let types = wait_until(&format!("metadata of every {job} metric"), BOUND, || {
        let metadata = prom.api(&format!("/api/v1/targets/metadata?match_target={selector}"))?;
        let types: BTreeMap<String, String> = metadata
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| (text(&m["metric"]).to_owned(), text(&m["type"]).to_owned()))
            .collect();
        let complete = documented.iter().all(|d| types.contains_key(&d.name));
        Ok(complete.then_some(types))
    })?;
    for doc in documented {
        assert_eq!(
            types[&doc.name], doc.kind,
            "type of {} (the README says {})",
            doc.name, doc.kind
        );
    }
    Ok(())
}

/// `promtool check metrics` on an exposition text: no complaint.
fn check_exposition(bins: &Binaries, what: &str, text: &str) -> Result<(), Error> {
    let dir = std::env::temp_dir();
    let out = bins.promtool(&["check", "metrics"], &dir, text)?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics on {what}'s /metrics ({}):\n{said}",
        out.status
    );
    Ok(())
}

/// Waits until every scrape target of `prom` is up (and there are `count`).
fn wait_targets_up(prom: &Prometheus, count: usize) -> Result<(), Error> {
    wait_until("every scrape target up", BOUND, || {
        let targets = prom.api("/api/v1/targets?state=active")?;
        let active = targets["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let up = active.iter().filter(|t| t["health"] == "up").count();
        Ok((active.len() == count && up == count).then_some(()))
    })
}

/// The Prometheus configuration: 1 s scrapes of `targets` (job, addresses) and 1 s evaluations.
fn config(targets: &[(&str, Vec<SocketAddr>)], rule_files: &[&str]) -> String {
    let mut config = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n",
    );
    if !rule_files.is_empty() {
        config.push_str("rule_files:\n");
        for file in rule_files {
            config.push_str(&format!("  - {file}\n"));
        }
    }
    config.push_str("scrape_configs:\n");
    for (job, addrs) in targets {
        let addrs: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
        config.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
            addrs.join(", ")
        ));
    }
    config
}

#[test]
fn a_real_prometheus_finds_every_documented_series_of_the_gateway_and_the_operator() {
    run_with_a_gateway(scrape_scenario);
}

fn scrape_scenario(bins: &Binaries) -> Result<(), Error> {
    let cp = ControlPlane::shared()?;
    apply_server_side(cp, &repo_dir().join("crds"))?;
    for name in chart_support::CRD_NAMES {
        wait_established(cp, name)?;
    }
    let home = namespace(cp, "prometheus")?;
    // A namespace whose quota refuses every Secret and ConfigMap: the gateway there cannot get
    // its children, so the operator counts reconcile errors (error="kube"), as it would in a
    // cluster whose quota or admission refuses its writes.
    let refusing = namespace(cp, "prometheus-quota")?;
    let gateway = |ns: &str| {
        format!(
            "apiVersion: sstp.io/v1alpha1\nkind: SstpGateway\nmetadata: {{name: gw, namespace: {ns}}}\n\
             spec: {{hostnames: [vpn.example.com], addressPool: 10.8.0.0/24}}\n"
        )
    };
    apply_yaml(
        cp,
        &format!(
            "apiVersion: v1\nkind: ResourceQuota\nmetadata: {{name: no-children, namespace: {}}}\n\
             spec: {{hard: {{secrets: \"0\", configmaps: \"0\"}}}}\n",
            refusing.name()
        ),
    )?;
    // Until the quota controller has counted the namespace, admission may let writes through.
    wait_until("the quota to be counted", BOUND, || {
        Ok(
            get_json(cp, &["resourcequota", "no-children", "-n", refusing.name()])?
                .filter(|quota| quota["status"]["hard"]["secrets"] == "0")
                .map(|_| ()),
        )
    })?;
    apply_yaml(
        cp,
        &format!(
            "{gw_q}---\n{gw}---\n\
             apiVersion: sstp.io/v1alpha1\nkind: SstpUser\nmetadata: {{name: alice, namespace: {ns}}}\nspec: {{}}\n",
            ns = home.name(),
            gw_q = gateway(refusing.name()),
            gw = gateway(home.name()),
        ),
    )?;
    let operator = OperatorProcess::start(cp, &[home.name(), refusing.name()])?;

    let gw_dir = TempDir::new("prometheus-gateway");
    let gateway = start_gateway(gw_dir.path(), 'a')?;

    let prom = Prometheus::start(
        bins,
        &config(
            &[
                (GATEWAY_JOB, vec![gateway.admin_addr()]),
                (OPERATOR_JOB, vec![operator.admin]),
            ],
            &[],
        ),
        &[],
    )?;
    wait_targets_up(&prom, 2).map_err(|err| {
        Error::Unavailable(format!(
            "{err}\nprometheus log:\n{}\noperator log:\n{}",
            prom.log(),
            operator.log()
        ))
    })?;

    // The gateway: every row of its README's table.
    let gateway_docs = documented::gateway();
    assert!(gateway_docs.len() >= 17, "{gateway_docs:?}");
    check_series(&prom, GATEWAY_JOB, &gateway_docs)?;
    check_types(&prom, GATEWAY_JOB, &gateway_docs)?;
    check_exposition(bins, "the gateway", &gateway.metrics()?)?;

    // The operator: its README's list, with the label values this setup must produce.
    let operator_docs = documented::operator();
    assert_eq!(
        operator_docs
            .iter()
            .map(|d| d.name.as_str())
            .collect::<BTreeSet<_>>()
            .len(),
        7,
        "{operator_docs:?}"
    );
    for promql in [
        r#"sstp_operator_leader{job="sstp-operator"} == 1"#,
        r#"sstp_operator_reconciles_total{job="sstp-operator", controller="gateway"}"#,
        r#"sstp_operator_reconciles_total{job="sstp-operator", controller="user"}"#,
        r#"sstp_operator_reconcile_duration_seconds_count{job="sstp-operator", controller="gateway"}"#,
        r#"sstp_operator_reconcile_errors_total{job="sstp-operator", controller="gateway", error="kube"} > 0"#,
        // Every controller and error kind from the start, at zero where nothing failed: the first
        // failure of a kind is an increase the alert sees.
        r#"count(sstp_operator_reconcile_errors_total{job="sstp-operator"}) == 10"#,
        r#"sstp_operator_reconcile_errors_total{job="sstp-operator", controller="user", error="pki"} == 0"#,
        r#"sstp_operator_writes_total{job="sstp-operator", kind="Secret"}"#,
        // The session census runs on the leader; no gateway pod runs here, so nothing fails.
        r#"sstp_operator_session_census_rounds_total{job="sstp-operator"} > 0"#,
        r#"sstp_operator_session_queries_failed_total{job="sstp-operator"} == 0"#,
    ] {
        series(&prom, promql).map_err(|err| {
            Error::Unavailable(format!("{err}\noperator log:\n{}", operator.log()))
        })?;
    }
    check_series(&prom, OPERATOR_JOB, &operator_docs)?;
    check_types(&prom, OPERATOR_JOB, &operator_docs)?;
    check_exposition(bins, "the operator", &operator.metrics()?)?;

    check_dashboard(&prom)
}

/// The chart's dashboard ConfigMap, and every query of it run against `prom` with data back.
fn check_dashboard(prom: &Prometheus) -> Result<(), Error> {
    let docs = render(&["metrics.grafanaDashboard.enabled=true"])?;
    let config_map = find(&docs, "ConfigMap", &format!("{FULLNAME}-dashboard"));
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    let dashboard: Value = serde_json::from_str(text(&config_map["data"]["sstp-gateways.json"]))
        .unwrap_or_else(|err| panic!("the dashboard is not JSON: {err}"));
    let variables: BTreeSet<&str> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| text(&v["name"]))
        .collect();
    assert_eq!(
        variables,
        ["datasource", "instance", "job", "namespace"].into()
    );
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        if panel["type"] == "row" {
            continue;
        }
        let title = text(&panel["title"]);
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            queries.push((title.to_owned(), text(&target["expr"]).to_owned()));
        }
    }
    assert!(queries.len() >= 20, "{queries:?}");
    for (title, expr) in queries {
        // What Grafana sends with every variable at "All" (their values are whatever Prometheus
        // has, so a match-all regex stands in) and a short rate window for 1 s scrapes.
        let promql = expr
            .replace("$__rate_interval", "15s")
            .replace("$job", ".*")
            .replace("$namespace", ".*")
            .replace("$instance", ".*");
        assert!(!promql.contains('$'), "{title}: unknown variable in {expr}");
        series(prom, &promql).map_err(|err| {
            Error::Unavailable(format!("dashboard panel {title:?}: {err} ({promql})"))
        })?;
    }
    Ok(())
}

#[test]
fn the_certificate_alert_fires_in_a_real_prometheus_for_a_short_lived_certificate_only() {
    run_with_a_gateway(certificate_scenario);
}

/// Puts a CA and a server certificate for `localhost` valid for `validity` into `dir`, in the
/// standalone gateway's layout, which it then serves (it reissues only what does not fit);
/// returns the certificate's notAfter.
fn short_lived_pki(dir: &Path, validity: time::Duration) -> i64 {
    use sstp_gateway::pki::{CertificateAuthority, KeyAlgorithm, ServerCertRequest};
    let now = time::OffsetDateTime::now_utc();
    let not_before = now - time::Duration::hours(1);
    let ca = CertificateAuthority::generate(
        &format!("sstp-e2e short-lived CA {}", std::process::id()),
        not_before,
        time::Duration::days(3650),
        KeyAlgorithm::EcdsaP256,
    )
    .unwrap_or_else(|err| panic!("CA: {err}"));
    let issued = ca
        .issue_server_cert(&ServerCertRequest {
            hostnames: vec!["localhost".to_owned()],
            not_before,
            validity,
            algorithm: KeyAlgorithm::EcdsaP256,
        })
        .unwrap_or_else(|err| panic!("server certificate: {err}"));
    std::fs::create_dir_all(dir).unwrap_or_else(|err| panic!("{err}"));
    for (name, contents) in [
        ("ca.crt", ca.cert_pem().to_owned()),
        ("ca.key", ca.key_pem()),
        ("server.crt", issued.chain_pem),
        ("server.key", issued.key_pem),
    ] {
        std::fs::write(dir.join(name), contents).unwrap_or_else(|err| panic!("{name}: {err}"));
    }
    (not_before + validity).unix_timestamp()
}

fn certificate_scenario(bins: &Binaries) -> Result<(), Error> {
    // Within the alert's default 14 days; the other gateway makes its own one-year certificate.
    let short_dir = TempDir::new("prometheus-short-cert");
    let not_after = short_lived_pki(short_dir.path(), time::Duration::days(3));
    let short = start_gateway(short_dir.path(), 's')?;
    assert_eq!(
        short.metric("sstp_certificate_expiry_timestamp_seconds")?,
        Some(not_after as f64),
        "the gateway serves another certificate than the short-lived one; its log:\n{}",
        short.log()
    );
    let long_dir = TempDir::new("prometheus-long-cert");
    let long = start_gateway(long_dir.path(), 'l')?;

    // The chart's rules as rendered, but without the hour the condition must hold.
    let groups = rule_groups(&["metrics.prometheusRule.alerts.certificateExpiring.for=2s"])?;
    let prom = Prometheus::start(
        bins,
        &config(
            &[(GATEWAY_JOB, vec![short.admin_addr(), long.admin_addr()])],
            &["rules.yaml"],
        ),
        &[("rules.yaml", &rule_file(&groups))],
    )?;
    wait_targets_up(&prom, 2)?;
    let rules = wait_until("every rule loaded and evaluated", BOUND, || {
        let data = prom.api("/api/v1/rules?type=alert")?;
        let rules: Vec<Value> = data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let evaluated = rules.len() == ALERTS && rules.iter().all(|r| r["health"] != "unknown");
        Ok(evaluated.then_some(rules))
    })?;
    for rule in &rules {
        assert_eq!(rule["health"], "ok", "{rule:#}");
    }

    // The long-lived certificate is in Prometheus, so each evaluation from here on looks at it.
    let long_instance = long.admin_addr().to_string();
    let long_series = series(
        &prom,
        &format!(
            r#"sstp_certificate_expiry_timestamp_seconds{{instance="{long_instance}"}} - time()"#
        ),
    )?;
    let left: f64 = text(&long_series[0]["value"][1])
        .parse()
        .unwrap_or_default();
    assert!(left > 300.0 * 86400.0, "{long_series:?}");

    let short_instance = short.admin_addr().to_string();
    let is_expiry = |alert: &Value| alert["labels"]["alertname"] == "SstpCertificateExpiringSoon";
    let alerts = wait_until("SstpCertificateExpiringSoon firing", BOUND, || {
        let alerts = prom.api("/api/v1/alerts")?["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let firing = alerts.iter().any(|a| {
            is_expiry(a)
                && a["labels"]["instance"] == short_instance.as_str()
                && a["state"] == "firing"
        });
        Ok(firing.then_some(alerts))
    })
    .map_err(|err| Error::Unavailable(format!("{err}; prometheus log:\n{}", prom.log())))?;
    let expiry: Vec<&Value> = alerts.iter().filter(|a| is_expiry(a)).collect();
    assert_eq!(
        expiry.len(),
        1,
        "only the short-lived certificate's gateway ({short_instance}), not {long_instance}: {expiry:#?}"
    );
    let alert = expiry[0];
    assert_eq!(alert["labels"]["job"], GATEWAY_JOB);
    assert_eq!(alert["labels"]["severity"], "warning");
    let summary = text(&alert["annotations"]["summary"]);
    assert!(
        summary.contains(&short_instance) && summary.contains("expires in 2d 22h"),
        "{summary}"
    );
    assert!(
        text(&alert["annotations"]["description"]).contains("below 14 days"),
        "{alert:#}"
    );
    Ok(())
}
