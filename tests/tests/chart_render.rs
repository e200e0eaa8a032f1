//! The chart offline: `helm lint` and `helm template` in every documented mode, the values schema
//! refusing typos, and the chart's CRD copies equal to the generated `crds/`.

mod chart_support;

use chart_support::{
    chart_dir, documents, find, helm, helm_ok, inventory, kube_version, render, repo_dir, strings,
};
use serde_json::Value;
use sstp_e2e::{ControlPlane, Error};

/// Every documented mode as `--set` values (README "Modes").
const MODES: [(&str, &[&str]); 7] = [
    ("default", &[]),
    ("namespaced", &["watchNamespaces={vpn}"]),
    (
        "namespaced, two namespaces",
        &["watchNamespaces={vpn-a,vpn-b}"],
    ),
    ("without CRDs", &["installCRDs=false"]),
    ("with a ServiceMonitor", &["serviceMonitor.enabled=true"]),
    ("with a NetworkPolicy", &["networkPolicy.enabled=true"]),
    (
        "with the alerts and the dashboard",
        &[
            "metrics.prometheusRule.enabled=true",
            "metrics.grafanaDashboard.enabled=true",
        ],
    ),
];

const RELEASE: &str = "sstp";
const NAMESPACE: &str = "sstp-system";
const FULLNAME: &str = "sstp-sstp-operator";

fn operator_container(docs: &[Value]) -> &Value {
    &find(docs, "Deployment", FULLNAME)["spec"]["template"]["spec"]["containers"][0]
}

fn rules(docs: &[Value], kind: &str, name: &str) -> Vec<Value> {
    find(docs, kind, name)["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The verbs a rule list grants on `group`/`resource` (without resourceNames restrictions).
fn verbs(rules: &[Value], group: &str, resource: &str) -> Vec<String> {
    let mut verbs: Vec<String> = rules
        .iter()
        .filter(|r| strings(&r["apiGroups"]).iter().any(|g| g == group))
        .filter(|r| strings(&r["resources"]).iter().any(|x| x == resource))
        .filter(|r| r.get("resourceNames").is_none())
        .flat_map(|r| strings(&r["verbs"]))
        .collect();
    verbs.sort();
    verbs
}

#[test]
fn helm_lint_passes_strictly_in_every_documented_mode() -> Result<(), Error> {
    let cp = ControlPlane::shared()?;
    let chart = chart_dir().display().to_string();
    for (mode, sets) in MODES {
        let mut args = vec!["lint", "--strict", chart.as_str(), "--kube-version"];
        let version = kube_version();
        args.push(&version);
        for set in sets {
            args.extend(["--set", set]);
        }
        let out = helm_ok(cp, &args)?;
        assert!(out.contains("0 chart(s) failed"), "{mode}: {out}");
    }
    Ok(())
}

#[test]
fn the_default_values_render_two_restricted_replicas_with_leader_election_and_cluster_rbac()
-> Result<(), Error> {
    let cp = ControlPlane::shared()?;
    let docs = render(cp, &chart_dir(), RELEASE, NAMESPACE, &[])?;
    let kinds: Vec<_> = inventory(&docs)
        .into_iter()
        .map(|(kind, namespace, name)| format!("{kind} {namespace}/{name}"))
        .collect();
    assert_eq!(
        kinds,
        [
            "ClusterRole /sstp-sstp-operator",
            "ClusterRoleBinding /sstp-sstp-operator",
            "CustomResourceDefinition /sstpgateways.sstp.io",
            "CustomResourceDefinition /sstpusers.sstp.io",
            "Deployment sstp-system/sstp-sstp-operator",
            "Lease sstp-system/sstp-sstp-operator",
            "PodDisruptionBudget sstp-system/sstp-sstp-operator",
            "Role sstp-system/sstp-sstp-operator-leader-election",
            "RoleBinding sstp-system/sstp-sstp-operator-leader-election",
            "ServiceAccount sstp-system/sstp-sstp-operator",
        ]
    );
    let deployment = find(&docs, "Deployment", FULLNAME);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], FULLNAME);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = operator_container(&docs);
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    assert!(security["capabilities"].get("add").is_none());
    let args = strings(&container["args"]);
    assert!(
        args.contains(&"--lease-name=sstp-sstp-operator".to_owned()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--gateway-image=ghcr.io/sstp-operator/sstp-gateway:0.1.0".to_owned()),
        "{args:?}"
    );
    assert!(
        !args.iter().any(|a| a.starts_with("--watch-namespace")),
        "{args:?}"
    );

    let cluster = rules(&docs, "ClusterRole", FULLNAME);
    assert_eq!(
        verbs(&cluster, "sstp.io", "sstpgateways"),
        ["get", "list", "watch"]
    );
    assert_eq!(verbs(&cluster, "sstp.io", "sstpgateways/status"), ["patch"]);
    assert_eq!(
        verbs(&cluster, "", "secrets"),
        ["create", "delete", "get", "list", "patch", "watch"]
    );
    assert_eq!(
        verbs(&cluster, "", "configmaps"),
        ["create", "get", "list", "patch", "watch"]
    );
    assert_eq!(verbs(&cluster, "", "pods"), ["list", "watch"]);
    // delete only on the kinds of conditional children; never a wildcard, escalate or bind.
    let deletable = ["secrets", "services", "certificates", "servicemonitors"];
    for rule in &cluster {
        let granted = strings(&rule["verbs"]);
        assert!(
            !granted
                .iter()
                .any(|v| v == "*" || v == "escalate" || v == "bind"),
            "{rule}"
        );
        if granted.iter().any(|v| v == "delete") {
            assert!(
                strings(&rule["resources"])
                    .iter()
                    .all(|r| deletable.contains(&r.as_str())),
                "{rule}"
            );
        }
    }
    assert_eq!(
        verbs(&cluster, "cert-manager.io", "certificates"),
        ["create", "delete", "get", "patch"]
    );
    let lease = rules(&docs, "Role", "sstp-sstp-operator-leader-election");
    assert_eq!(verbs(&lease, "coordination.k8s.io", "leases"), ["create"]);
    Ok(())
}

#[test]
fn local_images_and_pull_policies_reach_the_operator_and_its_gateway_flags() -> Result<(), Error> {
    let cp = ControlPlane::shared()?;
    let defaults = render(cp, &chart_dir(), RELEASE, NAMESPACE, &[])?;
    let args = strings(&operator_container(&defaults)["args"]);
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--gateway-image-pull-policy")),
        "unset by default, so Kubernetes picks IfNotPresent for the appVersion tag: {args:?}"
    );
    let docs = render(
        cp,
        &chart_dir(),
        RELEASE,
        NAMESPACE,
        &[
            "image.repository=localhost/sstp-operator",
            "image.tag=dev",
            "image.pullPolicy=Never",
            "gateway.image.repository=localhost/sstp-gateway",
            "gateway.image.tag=dev",
            "gateway.image.pullPolicy=Never",
        ],
    )?;
    let container = operator_container(&docs);
    assert_eq!(container["image"], "localhost/sstp-operator:dev");
    assert_eq!(container["imagePullPolicy"], "Never");
    let args = strings(&container["args"]);
    for expected in [
        "--gateway-image=localhost/sstp-gateway:dev",
        "--gateway-image-pull-policy=Never",
    ] {
        assert!(args.contains(&expected.to_owned()), "{expected}: {args:?}");
    }
    Ok(())
}

/// The documents of `kind` named `name`, by namespace.
fn by_namespace<'a>(docs: &'a [Value], kind: &str, name: &str) -> Vec<(String, &'a Value)> {
    let mut found: Vec<(String, &Value)> = docs
        .iter()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .map(|d| {
            (
                d["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                d,
            )
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[test]
fn namespaced_mode_passes_the_namespaces_and_grants_rights_only_there() -> Result<(), Error> {
    let cp = ControlPlane::shared()?;
    let docs = render(
        cp,
        &chart_dir(),
        RELEASE,
        NAMESPACE,
        &["watchNamespaces={vpn-a,vpn-b}"],
    )?;
    let args = strings(&operator_container(&docs)["args"]);
    let watch: Vec<&String> = args
        .iter()
        .filter(|a| a.starts_with("--watch-namespace"))
        .collect();
    assert_eq!(watch, ["--watch-namespace=vpn-a,vpn-b"], "{args:?}");
    // One Role and one RoleBinding in each watched namespace, nowhere else.
    let roles = by_namespace(&docs, "Role", FULLNAME);
    let namespaces: Vec<&str> = roles.iter().map(|(ns, _)| ns.as_str()).collect();
    assert_eq!(namespaces, ["vpn-a", "vpn-b"]);
    for (_, role) in &roles {
        let namespaced = role["rules"].as_array().cloned().unwrap_or_default();
        assert_eq!(
            verbs(&namespaced, "sstp.io", "sstpusers"),
            ["get", "list", "watch"]
        );
    }
    let bindings = by_namespace(&docs, "RoleBinding", FULLNAME);
    let namespaces: Vec<&str> = bindings.iter().map(|(ns, _)| ns.as_str()).collect();
    assert_eq!(namespaces, ["vpn-a", "vpn-b"]);
    for (_, binding) in &bindings {
        assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
        assert_eq!(binding["roleRef"]["name"], FULLNAME);
    }
    // What stays cluster-wide is one read of two CRDs, by name.
    let cluster = rules(&docs, "ClusterRole", FULLNAME);
    assert_eq!(cluster.len(), 1, "{cluster:?}");
    assert_eq!(
        strings(&cluster[0]["resources"]),
        ["customresourcedefinitions"]
    );
    assert_eq!(strings(&cluster[0]["verbs"]), ["get"]);
    assert_eq!(
        strings(&cluster[0]["resourceNames"]),
        [
            "certificates.cert-manager.io",
            "servicemonitors.monitoring.coreos.com"
        ]
    );
    Ok(())
}

#[test]
fn install_crds_false_leaves_the_crds_out() -> Result<(), Error> {
    let cp = ControlPlane::shared()?;
    let docs = render(cp, &chart_dir(), RELEASE, NAMESPACE, &["installCRDs=false"])?;
    assert!(docs.iter().all(|d| d["kind"] != "CustomResourceDefinition"));
    assert!(docs.iter().any(|d| d["kind"] == "Deployment"));
    Ok(())
}

#[test]
fn the_service_monitor_mode_adds_a_metrics_service_and_its_monitor() -> Result<(), Error> {
    let cp = ControlPlane::shared()?;
    let docs = render(
        cp,
        &chart_dir(),
        RELEASE,
        NAMESPACE,
        &[
            "serviceMonitor.enabled=true",
            "serviceMonitor.labels.release=prometheus",
        ],
    )?;
    let service = find(&docs, "Service", "sstp-sstp-operator-metrics");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
    let monitor = find(&docs, "ServiceMonitor", FULLNAME);
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    // The job prometheus-operator takes from the Service: sstp-operator, the alerts' operatorJob.
    assert_eq!(monitor["spec"]["jobLabel"], "app.kubernetes.io/name");
    assert_eq!(
        service["metadata"]["labels"]["app.kubernetes.io/name"],
        "sstp-operator"
    );
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        service["metadata"]["labels"]
            .as_object()
            .map(|labels| {
                let keep = ["app.kubernetes.io/name", "app.kubernetes.io/instance"];
                Value::Object(
                    labels
                        .iter()
                        .filter(|(k, _)| keep.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                )
            })
            .unwrap_or_default()
    );
    Ok(())
}

#[test]
fn the_network_policy_mode_allows_only_metrics_in_and_the_api_server_and_gateway_admin_out()
-> Result<(), Error> {
    let cp = ControlPlane::shared()?;
    let docs = render(
        cp,
        &chart_dir(),
        RELEASE,
        NAMESPACE,
        &[
            "networkPolicy.enabled=true",
            "networkPolicy.apiServer.cidrs={10.0.0.1/32}",
        ],
    )?;
    let policy = find(&docs, "NetworkPolicy", FULLNAME);
    assert_eq!(
        strings(&policy["spec"]["policyTypes"]),
        ["Ingress", "Egress"]
    );
    assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["port"], 8080);
    assert_eq!(
        policy["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"],
        "10.0.0.1/32"
    );
    let ports: Vec<_> = policy["spec"]["egress"][0]["ports"]
        .as_array()
        .map(|p| p.iter().map(|p| p["port"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(ports, [443, 6443]);
    // The session census: the gateway pods' admin port, in any namespace.
    let census = &policy["spec"]["egress"][1];
    assert_eq!(census["to"][0]["namespaceSelector"], serde_json::json!({}));
    assert_eq!(
        census["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "sstp-gateway"
    );
    assert_eq!(census["ports"][0]["port"], 9090);
    assert_eq!(policy["spec"]["egress"].as_array().map(Vec::len), Some(2));
    Ok(())
}

#[test]
fn the_alerts_and_the_dashboard_take_their_namespace_labels_and_thresholds_from_values()
-> Result<(), Error> {
    let cp = ControlPlane::shared()?;
    let docs = render(
        cp,
        &chart_dir(),
        RELEASE,
        NAMESPACE,
        &[
            "metrics.prometheusRule.enabled=true",
            "metrics.prometheusRule.namespace=monitoring",
            "metrics.prometheusRule.labels.release=prometheus",
            "metrics.prometheusRule.alertLabels.team=vpn",
            "metrics.prometheusRule.gatewayJob=vpn-gateways",
            "metrics.prometheusRule.alerts.certificateExpiring.days=30",
            "metrics.prometheusRule.alerts.certificateExpiring.for=",
            "metrics.prometheusRule.operatorJob=vpn-operator",
            "metrics.prometheusRule.alerts.operatorReconcileErrors.enabled=false",
            "metrics.prometheusRule.alerts.operatorNoLeader.enabled=false",
            "metrics.grafanaDashboard.enabled=true",
            "metrics.grafanaDashboard.namespace=grafana",
            "metrics.grafanaDashboard.annotations.grafana_folder=VPN",
        ],
    )?;
    let rule = find(&docs, "PrometheusRule", FULLNAME);
    assert_eq!(rule["metadata"]["namespace"], "monitoring");
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
    let group_names = |rule: &Value| -> Vec<String> {
        rule["spec"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g["name"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(group_names(rule), ["sstp-gateway", "sstp-operator"]);
    // The operator's group holds only the alert left on, on the job named by operatorJob.
    let operator_rules = rule["spec"]["groups"][1]["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(operator_rules.len(), 1, "{operator_rules:?}");
    assert_eq!(operator_rules[0]["alert"], "SstpOperatorDown");
    assert_eq!(
        operator_rules[0]["expr"],
        "sum by (namespace, job) (up{job=\"vpn-operator\"}) == 0\nor\nabsent(up{job=\"vpn-operator\"})"
    );
    // With every operator alert off the group goes: a group without rules is invalid.
    let without_operator = render(
        cp,
        &chart_dir(),
        RELEASE,
        NAMESPACE,
        &[
            "metrics.prometheusRule.enabled=true",
            "metrics.prometheusRule.alerts.operatorDown.enabled=false",
            "metrics.prometheusRule.alerts.operatorNoLeader.enabled=false",
            "metrics.prometheusRule.alerts.operatorReconcileErrors.enabled=false",
        ],
    )?;
    assert_eq!(
        group_names(find(&without_operator, "PrometheusRule", FULLNAME)),
        ["sstp-gateway"]
    );
    let alerts = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(alerts.len(), 9);
    let alert = |name: &str| {
        alerts
            .iter()
            .find(|a| a["alert"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no alert {name}"))
    };
    for alert in &alerts {
        assert_eq!(alert["labels"]["team"], "vpn", "{alert}");
    }
    assert_eq!(
        alert("SstpGatewayDown")["expr"],
        "up{job=\"vpn-gateways\"} == 0"
    );
    let expiring = alert("SstpCertificateExpiringSoon");
    assert_eq!(
        expiring["expr"],
        "sstp_certificate_expiry_timestamp_seconds - time() < 30 * 86400"
    );
    assert!(expiring.get("for").is_none(), "{expiring}");

    let dashboard = find(&docs, "ConfigMap", "sstp-sstp-operator-dashboard");
    assert_eq!(dashboard["metadata"]["namespace"], "grafana");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        dashboard["metadata"]["annotations"]["grafana_folder"],
        "VPN"
    );
    let json: Value = serde_json::from_str(
        dashboard["data"]["sstp-gateways.json"]
            .as_str()
            .unwrap_or_default(),
    )
    .unwrap_or_else(|err| panic!("the dashboard is not JSON: {err}"));
    assert_eq!(json["uid"], "sstp-gateways");

    let typo = refused(
        cp,
        &["metrics.prometheusRule.alerts.certificateExpiring.dayz=3"],
    )?;
    assert!(typo.contains("dayz"), "{typo}");
    let ratio = refused(
        cp,
        &["metrics.prometheusRule.alerts.addressPoolNearlyFull.ratio=2"],
    )?;
    assert!(ratio.contains("ratio"), "{ratio}");
    Ok(())
}

/// `helm template` output (stderr) for values that must be refused.
fn refused(cp: &ControlPlane, sets: &[&str]) -> Result<String, Error> {
    let chart = chart_dir().display().to_string();
    let version = kube_version();
    let mut args = vec![
        "template",
        RELEASE,
        chart.as_str(),
        "--kube-version",
        version.as_str(),
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = helm(cp, &args)?;
    assert!(!out.status.success(), "{sets:?} was accepted");
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_values_schema_refuses_typos_and_impossible_values() -> Result<(), Error> {
    let cp = ControlPlane::shared()?;
    let typo = refused(cp, &["replicaCont=3"])?;
    assert!(typo.contains("replicaCont"), "{typo}");
    let nested = refused(cp, &["serviceMonitor.enable=true"])?;
    assert!(nested.contains("enable"), "{nested}");
    let wrong_type = refused(cp, &["installCRDs=maybe"])?;
    assert!(wrong_type.contains("installCRDs"), "{wrong_type}");
    let twice = refused(cp, &["watchNamespaces={a,a}"])?;
    assert!(twice.contains("watchNamespaces"), "{twice}");
    let invalid = refused(cp, &["watchNamespaces={a,B_b}"])?;
    assert!(invalid.contains("watchNamespaces"), "{invalid}");
    let policy = refused(cp, &["gateway.image.pullPolicy=Sometimes"])?;
    assert!(policy.contains("pullPolicy"), "{policy}");
    let grace = refused(cp, &["leaderElection.renewGraceSeconds=15"])?;
    assert!(grace.contains("renewGraceSeconds must be less"), "{grace}");
    Ok(())
}

#[test]
fn the_chart_crd_copies_equal_the_generated_crds() {
    let copies = chart_dir().join("crds-templates");
    let generated = repo_dir().join("crds");
    let names = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        names(&copies),
        names(&generated),
        "run tests/chart/sync-crds"
    );
    for name in names(&generated) {
        let read = |dir: &std::path::Path| {
            std::fs::read_to_string(dir.join(&name)).unwrap_or_else(|err| panic!("{name}: {err}"))
        };
        assert!(
            read(&copies) == read(&generated),
            "charts/sstp-operator/crds-templates/{name} differs from crds/{name}: run tests/chart/sync-crds"
        );
    }
}

#[test]
fn the_rendered_crds_are_the_generated_ones_plus_the_keep_policy_and_labels() -> Result<(), Error> {
    let cp = ControlPlane::shared()?;
    let docs = render(cp, &chart_dir(), RELEASE, NAMESPACE, &[])?;
    let mut rendered: Vec<Value> = docs
        .into_iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect();
    assert_eq!(rendered.len(), 2);
    for crd in &mut rendered {
        let metadata = crd["metadata"].as_object_mut().expect("metadata");
        let annotations = metadata.remove("annotations").unwrap_or_default();
        assert_eq!(annotations["helm.sh/resource-policy"], "keep");
        let labels = metadata.remove("labels").unwrap_or_default();
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm");
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let file = name
            .split('.')
            .next()
            .unwrap_or_default()
            .trim_end_matches('s');
        let generated = std::fs::read_to_string(repo_dir().join(format!("crds/{file}.yaml")))
            .unwrap_or_else(|err| panic!("crds/{file}.yaml: {err}"));
        assert_eq!(*crd, documents(&generated)[0], "{name}");
    }
    Ok(())
}
