//! A real Prometheus on the node, configured with the chart README's scrape jobs, discovering
//! the pods through the project's API server; with its test.

// The scenario's constants, shared helpers and `Outcome` live in the test's root.
use super::*;

/// A real Prometheus's view of the installed pods, found by Kubernetes service discovery.
#[derive(Debug, Default)]
pub(super) struct Discovered {
    /// The `pod` label of every healthy target, by job.
    pub(super) up: BTreeMap<String, BTreeSet<String>>,
    /// The `sstp_` metric names each pod exposes (a histogram's by its base name), by pod.
    pub(super) metrics: BTreeMap<String, BTreeSet<String>>,
    /// The operator pods whose `sstp_operator_leader` is 1.
    pub(super) leaders: BTreeSet<String>,
}

/// Bounds the wait for Prometheus to discover and scrape every pod: 2 s scrapes, so seconds when
/// healthy; a loaded machine gets room.
pub(super) const SCRAPE_BOUND: Duration = Duration::from_secs(180);

/// The `scrape_configs` of the chart README's "Scraping without prometheus-operator", with the
/// API server's address and credentials (`kubeconfig_file`) and the two namespaces added to each
/// discovery, as a Prometheus outside the cluster needs them.
pub(super) fn documented_scrape_configs(cp: &ControlPlane) -> Value {
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).unwrap();
    let block = readme
        .split("## Scraping without prometheus-operator")
        .nth(1)
        .and_then(|rest| rest.split("```yaml\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the chart README has a scrape_configs block under its Scraping section");
    let mut config: Value = serde_norway::from_str(block).unwrap();
    let jobs = config["scrape_configs"]
        .as_array_mut()
        .expect("scrape_configs");
    assert_eq!(jobs.len(), 2, "{block}");
    for job in jobs {
        for sd in job["kubernetes_sd_configs"]
            .as_array_mut()
            .expect("kubernetes_sd_configs")
        {
            sd["kubeconfig_file"] = cp.kubeconfig().display().to_string().into();
            sd["namespaces"] = serde_json::json!({ "names": [GATEWAY_NS, OPERATOR_NS] });
        }
    }
    config["scrape_configs"].take()
}

/// Step 2: a real Prometheus in the node's network namespace (where pod addresses route), with
/// the documented scrape jobs, discovers the pods from the API server and scrapes them.
pub(super) fn discovered(
    cp: &ControlPlane,
    install: &Install,
) -> Result<Option<Discovered>, Error> {
    let Some(bins) = prometheus::binaries()? else {
        return Ok(None);
    };
    let netns = node_netns(cp)?;
    let (node_ip, _, _) = service_endpoint(cp)?;
    let listen: Ipv4Addr = node_ip
        .parse()
        .map_err(|_| Error::Unavailable(format!("node0's InternalIP {node_ip} is not IPv4")))?;
    let config = serde_json::json!({
        "global": { "scrape_interval": "2s", "scrape_timeout": "2s" },
        "scrape_configs": documented_scrape_configs(cp),
    });
    let prom = Prometheus::start_in(
        &bins,
        Placement::Netns {
            netns: &netns,
            listen,
        },
        &config.to_string(),
        &[],
    )?;
    let expected: BTreeMap<String, BTreeSet<String>> = [
        (
            "sstp-gateway".to_owned(),
            install
                .gateway_pods
                .iter()
                .map(|p| p.name.clone())
                .collect(),
        ),
        (
            "sstp-operator".to_owned(),
            install.operator_pods.iter().cloned().collect(),
        ),
    ]
    .into();
    let mut up = BTreeMap::new();
    let waited = wait_until(
        "Prometheus to discover and scrape every pod",
        SCRAPE_BOUND,
        || {
            let targets = prom.api("/api/v1/targets?state=active")?;
            up.clear();
            for target in targets["activeTargets"].as_array().into_iter().flatten() {
                if target["health"] == "up" {
                    let label =
                        |name: &str| target["labels"][name].as_str().unwrap_or("").to_owned();
                    up.entry(label("job"))
                        .or_insert_with(BTreeSet::new)
                        .insert(label("pod"));
                }
            }
            Ok((up == expected).then_some(()))
        },
    );
    if let Err(error) = waited {
        let targets = prom.api("/api/v1/targets").unwrap_or_default();
        return Err(Error::Unavailable(format!(
            "{error}; up: {up:?}, expected {expected:?}\ntargets: {targets:#}\nprometheus log:\n{}",
            prom.log()
        )));
    }
    let mut metrics: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for series in prom.query(r#"count by (pod, __name__) ({__name__=~"sstp_.+"})"#)? {
        let name = series["metric"]["__name__"].as_str().unwrap_or("");
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        metrics
            .entry(series["metric"]["pod"].as_str().unwrap_or("").to_owned())
            .or_default()
            .insert(base.to_owned());
    }
    let leaders = prom
        .query(r#"sstp_operator_leader{job="sstp-operator"} == 1"#)?
        .iter()
        .filter_map(|series| series["metric"]["pod"].as_str().map(str::to_owned))
        .collect();
    Ok(Some(Discovered {
        up,
        metrics,
        leaders,
    }))
}

#[test]
fn a_real_prometheus_finds_every_pod_and_documented_series_through_kubernetes_discovery() {
    let install = installed();
    let Some(found) = discovery() else {
        eprintln!("skipped: Prometheus is not built (tests/prometheus/build)");
        return;
    };
    let gateway_pods: BTreeSet<String> = install
        .gateway_pods
        .iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(found.up["sstp-gateway"], gateway_pods, "{found:#?}");
    let operator_pods: BTreeSet<String> = install.operator_pods.iter().cloned().collect();
    assert_eq!(found.up["sstp-operator"], operator_pods, "{found:#?}");
    // Every series the gateway README documents, on each pod: what an alert or the dashboard
    // selects is there from the start, not only once something happened.
    let documented: BTreeSet<String> = documented::gateway().into_iter().map(|d| d.name).collect();
    for pod in &gateway_pods {
        assert_eq!(
            found.metrics.get(pod),
            Some(&documented),
            "gateway pod {pod}"
        );
    }
    let operator_documented: BTreeSet<String> =
        documented::operator().into_iter().map(|d| d.name).collect();
    for pod in &operator_pods {
        let exposed = found.metrics.get(pod).cloned().unwrap_or_default();
        // writes_total appears with the first write, which only the leader makes.
        let missing: Vec<&String> = operator_documented
            .difference(&exposed)
            .filter(|name| name.as_str() != "sstp_operator_writes_total")
            .collect();
        assert!(missing.is_empty(), "operator pod {pod} lacks {missing:?}");
        assert!(
            exposed.is_subset(&operator_documented),
            "{pod}: {exposed:?}"
        );
    }
    assert_eq!(found.leaders.len(), 1, "one operator leads: {found:#?}");
    let leader = found.leaders.first().unwrap();
    assert!(
        install.lease_holder.starts_with(leader.as_str()),
        "the pod reporting leadership {leader} holds the Lease {}",
        install.lease_holder
    );
}
