//! The chart against the real control plane: install (CRDs, operator objects, pods admitted under
//! the restricted Pod Security Standard), RBAC that is enough and no more (`kubectl auth can-i
//! --as`), `helm upgrade` carrying a CRD change, `helm uninstall` cleaning up, and every example
//! applying cleanly.
//!
//! The tests that install the CRDs hold [`crd_lock`] and delete the CRDs when done (the release
//! keeps them on uninstall, and a CRD can belong to one release only). They need a control plane
//! of their own, which is the default (one per test binary).

mod chart_support;

use chart_support::{
    CRD_NAMES, TempDir, can_i, chart_dir, copy_dir, crd_lock, delete_crds, foreign_crds, get_json,
    helm, helm_ok, kubectl_ok, namespace, strings, wait_established, wait_for,
};
use sstp_e2e::{ControlPlane, Error};

/// `system:serviceaccount:<namespace>:<name>`.
fn service_account(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// `helm install <release> <chart> -n <namespace> --set ...`; stdout and stderr.
fn install(
    cp: &ControlPlane,
    release: &str,
    chart: &std::path::Path,
    namespace: &str,
    sets: &[&str],
) -> Result<(String, String), Error> {
    let chart = chart.display().to_string();
    let mut args = vec!["install", release, chart.as_str(), "--namespace", namespace];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = helm(cp, &args)?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "helm install {release} failed: {stderr}"
    );
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), stderr))
}

/// Waits until both CRDs are established (served).
fn wait_crds(cp: &ControlPlane) -> Result<(), Error> {
    for name in CRD_NAMES {
        wait_established(cp, name)?;
    }
    Ok(())
}

#[test]
fn install_creates_crds_and_restricted_operator_pods_upgrade_changes_a_crd_uninstall_cleans_up()
-> Result<(), Error> {
    let cp = ControlPlane::shared()?;
    let _crds = crd_lock();
    delete_crds(cp)?;
    let ns = namespace(cp, "chart-lifecycle")?;
    let ns = ns.name();
    // The operator's namespace enforces "restricted": the ReplicaSet's pods are admitted only if
    // the chart's pod template meets it, and a violation would also be a warning on install.
    kubectl_ok(
        cp,
        &[
            "label",
            "namespace",
            ns,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/warn=restricted",
        ],
    )?;
    let release = "lifecycle";
    let fullname = "lifecycle-sstp-operator";
    let (notes, warnings) = install(cp, release, &chart_dir(), ns, &[])?;
    assert!(!warnings.contains("PodSecurity"), "{warnings}");
    assert!(notes.contains("What to apply next"), "{notes}");

    wait_crds(cp)?;
    for name in CRD_NAMES {
        let crd = get_json(cp, &["crd", name])?.unwrap_or_default();
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
        assert_eq!(
            crd["metadata"]["annotations"]["meta.helm.sh/release-name"],
            release
        );
    }
    for (kind, namespaced) in [
        ("deployment", true),
        ("serviceaccount", true),
        ("poddisruptionbudget", true),
        ("role", true),
        ("rolebinding", true),
        ("clusterrole", false),
        ("clusterrolebinding", false),
    ] {
        let name = if kind.starts_with("role") {
            format!("{fullname}-leader-election")
        } else {
            fullname.to_owned()
        };
        let found = if namespaced {
            get_json(cp, &[kind, &name, "-n", ns])?
        } else {
            get_json(cp, &[kind, &name])?
        };
        assert!(found.is_some(), "{kind} {name} was not created");
    }
    let pods = wait_for("two operator pods admitted", || {
        let pods = get_json(
            cp,
            &[
                "pods",
                "-n",
                ns,
                "-l",
                "app.kubernetes.io/instance=lifecycle",
            ],
        )?
        .unwrap_or_default();
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        Ok((items.len() == 2).then_some(items))
    })?;
    for pod in &pods {
        assert_eq!(pod["spec"]["serviceAccountName"], fullname);
    }

    // Upgrade with a chart whose CRD copy has one more printer column.
    let temp = TempDir::new("upgrade");
    let chart = temp.path().join("sstp-operator");
    copy_dir(&chart_dir(), &chart);
    let crd_file = chart.join("crds-templates/sstpuser.yaml");
    let crd = std::fs::read_to_string(&crd_file).unwrap_or_default();
    let marker = "  - additionalPrinterColumns:\n";
    assert!(crd.contains(marker), "the CRD copy changed shape");
    let column =
        "    - jsonPath: .spec.maxSessions\n      name: MaxSessions\n      type: integer\n";
    std::fs::write(
        &crd_file,
        crd.replacen(marker, &format!("{marker}{column}"), 1),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let columns = |cp: &ControlPlane| -> Result<Vec<String>, Error> {
        let crd = get_json(cp, &["crd", "sstpusers.sstp.io"])?.unwrap_or_default();
        Ok(crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    };
    assert!(!columns(cp)?.contains(&"MaxSessions".to_owned()));
    let chart_arg = chart.display().to_string();
    helm_ok(cp, &["upgrade", release, &chart_arg, "--namespace", ns])?;
    assert!(
        columns(cp)?.contains(&"MaxSessions".to_owned()),
        "helm upgrade did not apply the CRD change: {:?}",
        columns(cp)?
    );

    helm_ok(cp, &["uninstall", release, "--namespace", ns, "--wait"])?;
    wait_for("the release's objects to be deleted", || {
        let left = [
            get_json(cp, &["deployment", fullname, "-n", ns])?,
            get_json(cp, &["serviceaccount", fullname, "-n", ns])?,
            get_json(
                cp,
                &["role", &format!("{fullname}-leader-election"), "-n", ns],
            )?,
            get_json(cp, &["clusterrole", fullname])?,
            get_json(cp, &["clusterrolebinding", fullname])?,
        ];
        Ok(left.iter().all(Option::is_none).then_some(()))
    })?;
    let releases = helm_ok(cp, &["list", "--namespace", ns, "--short"])?;
    assert!(releases.trim().is_empty(), "{releases}");
    // The CRDs stay (and every gateway and user with them).
    for name in CRD_NAMES {
        assert!(
            get_json(cp, &["crd", name])?.is_some(),
            "{name} was deleted"
        );
    }
    delete_crds(cp)
}

#[test]
fn a_typo_in_values_fails_the_install_and_leaves_no_release() -> Result<(), Error> {
    let cp = ControlPlane::shared()?;
    let ns = namespace(cp, "chart-typo")?;
    let chart = chart_dir().display().to_string();
    let out = helm(
        cp,
        &[
            "install",
            "typo",
            &chart,
            "--namespace",
            ns.name(),
            "--set",
            "gateway.imag.tag=1",
        ],
    )?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("additional properties 'imag' not allowed"),
        "{stderr}"
    );
    assert!(
        !helm(cp, &["status", "typo", "--namespace", ns.name()])?
            .status
            .success()
    );
    Ok(())
}

/// `(verb, resource, extra kubectl flags, expected)`.
type Check<'a> = (&'a str, &'a str, Vec<String>, bool);

fn check_all(cp: &ControlPlane, account: &str, checks: &[Check<'_>]) -> Result<(), Error> {
    // The authorizer learns of new Roles through a watch: wait until the first grant shows.
    if let Some((verb, resource, extra, _)) = checks.iter().find(|check| check.3) {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        wait_for("the operator's RBAC to take effect", || {
            Ok(can_i(cp, account, verb, resource, &extra)?.then_some(()))
        })?;
    }
    let mut wrong = Vec::new();
    for (verb, resource, extra, expected) in checks {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        if can_i(cp, account, verb, resource, &extra)? != *expected {
            wrong.push(format!("{verb} {resource} {extra:?}: expected {expected}"));
        }
    }
    assert!(wrong.is_empty(), "RBAC differs:\n{}", wrong.join("\n"));
    Ok(())
}

fn n(namespace: &str) -> Vec<String> {
    vec!["-n".to_owned(), namespace.to_owned()]
}

#[test]
fn cluster_wide_rbac_allows_what_the_operator_does_and_nothing_more() -> Result<(), Error> {
    let cp = ControlPlane::shared()?;
    // kubectl resolves a resource's group through discovery: the CRDs must be served.
    let _crds = crd_lock();
    delete_crds(cp)?;
    foreign_crds(cp)?;
    let ns = namespace(cp, "chart-rbac")?;
    let ns = ns.name();
    install(cp, "rbac", &chart_dir(), ns, &[])?;
    wait_crds(cp)?;
    let account = service_account(ns, "rbac-sstp-operator");
    let any = || vec!["-n".to_owned(), "anywhere".to_owned()];
    let all = || vec!["--all-namespaces".to_owned()];
    let status = || {
        vec![
            "-n".to_owned(),
            "anywhere".to_owned(),
            "--subresource=status".to_owned(),
        ]
    };
    let lease = "leases.coordination.k8s.io";
    let own_lease = format!("{lease}/rbac-sstp-operator");
    let other_lease = format!("{lease}/someone-else");
    let checks: Vec<Check<'_>> = vec![
        // What the controllers do.
        ("list", "sstpgateways.sstp.io", all(), true),
        ("watch", "sstpusers.sstp.io", all(), true),
        ("get", "sstpgateways.sstp.io", any(), true),
        ("patch", "sstpgateways.sstp.io", status(), true),
        ("patch", "sstpusers.sstp.io", status(), true),
        (
            "update",
            "sstpgateways.sstp.io",
            vec!["-n".into(), "x".into(), "--subresource=finalizers".into()],
            true,
        ),
        ("list", "secrets", all(), true),
        ("create", "secrets", any(), true),
        ("patch", "secrets", any(), true),
        ("create", "deployments.apps", any(), true),
        ("patch", "services", any(), true),
        ("patch", "configmaps", any(), true),
        ("create", "serviceaccounts", any(), true),
        ("create", "roles.rbac.authorization.k8s.io", any(), true),
        (
            "create",
            "rolebindings.rbac.authorization.k8s.io",
            any(),
            true,
        ),
        ("patch", "poddisruptionbudgets.policy", any(), true),
        ("list", "pods", all(), true),
        ("watch", "pods", all(), true),
        // Conditional children the gateway stopped wanting (only if it controls them).
        ("delete", "secrets", any(), true),
        ("delete", "services", any(), true),
        ("delete", "certificates.cert-manager.io", any(), true),
        (
            "delete",
            "servicemonitors.monitoring.coreos.com",
            any(),
            true,
        ),
        ("create", "events.events.k8s.io", any(), true),
        ("patch", "certificates.cert-manager.io", any(), true),
        (
            "create",
            "servicemonitors.monitoring.coreos.com",
            any(),
            true,
        ),
        (
            "get",
            "customresourcedefinitions.apiextensions.k8s.io/certificates.cert-manager.io",
            vec![],
            true,
        ),
        (
            "get",
            "customresourcedefinitions.apiextensions.k8s.io/servicemonitors.monitoring.coreos.com",
            vec![],
            true,
        ),
        ("create", lease, n(ns), true),
        ("get", &own_lease, n(ns), true),
        ("patch", &own_lease, n(ns), true),
        // Nothing more.
        ("update", "sstpgateways.sstp.io", any(), false),
        ("patch", "sstpusers.sstp.io", any(), false),
        ("delete", "sstpgateways.sstp.io", any(), false),
        ("create", "pods", any(), false),
        ("get", "pods", any(), false),
        ("delete", "configmaps", any(), false),
        ("delete", "serviceaccounts", any(), false),
        ("delete", "deployments.apps", any(), false),
        ("delete", "roles.rbac.authorization.k8s.io", any(), false),
        ("delete", "poddisruptionbudgets.policy", any(), false),
        ("delete", "pods", any(), false),
        ("update", "deployments.apps", any(), false),
        ("escalate", "roles.rbac.authorization.k8s.io", any(), false),
        ("bind", "roles.rbac.authorization.k8s.io", any(), false),
        (
            "create",
            "clusterroles.rbac.authorization.k8s.io",
            vec![],
            false,
        ),
        (
            "create",
            "clusterrolebindings.rbac.authorization.k8s.io",
            vec![],
            false,
        ),
        (
            "get",
            "customresourcedefinitions.apiextensions.k8s.io/sstpgateways.sstp.io",
            vec![],
            false,
        ),
        (
            "list",
            "customresourcedefinitions.apiextensions.k8s.io",
            vec![],
            false,
        ),
        ("list", "nodes", vec![], false),
        ("create", "namespaces", vec![], false),
        ("list", "certificates.cert-manager.io", any(), false),
        ("create", lease, n("kube-system"), false),
        ("get", &other_lease, n(ns), false),
        ("list", lease, n(ns), false),
    ];
    check_all(cp, &account, &checks)?;
    helm_ok(cp, &["uninstall", "rbac", "--namespace", ns])?;
    delete_crds(cp)
}

#[test]
fn namespaced_rbac_confines_the_operator_to_the_watched_namespaces() -> Result<(), Error> {
    let cp = ControlPlane::shared()?;
    let _crds = crd_lock();
    delete_crds(cp)?;
    foreign_crds(cp)?;
    let home = namespace(cp, "chart-ns-home")?;
    let first = namespace(cp, "chart-ns-watched-a")?;
    let second = namespace(cp, "chart-ns-watched-b")?;
    let other = namespace(cp, "chart-ns-other")?;
    let (home, first, second, other) = (home.name(), first.name(), second.name(), other.name());
    let watch = format!("watchNamespaces={{{first},{second}}}");
    install(cp, "scoped", &chart_dir(), home, &[&watch])?;
    wait_crds(cp)?;
    let deployment =
        get_json(cp, &["deployment", "scoped-sstp-operator", "-n", home])?.unwrap_or_default();
    let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(
        args.contains(&format!("--watch-namespace={first},{second}")),
        "{args:?}"
    );
    let account = service_account(home, "scoped-sstp-operator");
    let lease = "leases.coordination.k8s.io/scoped-sstp-operator";
    let mut checks: Vec<Check<'_>> = Vec::new();
    // Everything the operator does, in each watched namespace.
    for watched in [first, second] {
        checks.extend([
            ("list", "sstpgateways.sstp.io", n(watched), true),
            ("watch", "sstpusers.sstp.io", n(watched), true),
            ("watch", "secrets", n(watched), true),
            ("create", "secrets", n(watched), true),
            ("create", "deployments.apps", n(watched), true),
            (
                "create",
                "roles.rbac.authorization.k8s.io",
                n(watched),
                true,
            ),
            ("create", "events.events.k8s.io", n(watched), true),
            ("watch", "pods", n(watched), true),
            ("create", "pods", n(watched), false),
            ("delete", "secrets", n(watched), true),
            ("delete", "configmaps", n(watched), false),
        ]);
    }
    checks.extend([
        (
            "get",
            "customresourcedefinitions.apiextensions.k8s.io/certificates.cert-manager.io",
            vec![],
            true,
        ),
        ("patch", lease, n(home), true),
        // Nowhere else: not another namespace, not all of them, not even its own.
        ("get", "secrets", n(other), false),
        ("watch", "secrets", n(other), false),
        ("list", "pods", n(other), false),
        ("delete", "secrets", n(other), false),
        ("list", "sstpgateways.sstp.io", n(other), false),
        ("watch", "sstpusers.sstp.io", n(other), false),
        ("create", "deployments.apps", n(other), false),
        ("create", "events.events.k8s.io", n(other), false),
        (
            "list",
            "secrets",
            vec!["--all-namespaces".to_owned()],
            false,
        ),
        (
            "list",
            "sstpusers.sstp.io",
            vec!["--all-namespaces".to_owned()],
            false,
        ),
        ("get", "secrets", n(home), false),
    ]);
    // check_all waits for the first grant (in `first`); the second namespace's Role reaches the
    // authorizer by the same watch, but wait for it too rather than assume the order.
    wait_for("the Role in the second namespace to take effect", || {
        Ok(can_i(
            cp,
            &account,
            "list",
            "sstpgateways.sstp.io",
            &["-n", second],
        )?
        .then_some(()))
    })?;
    check_all(cp, &account, &checks)?;
    helm_ok(cp, &["uninstall", "scoped", "--namespace", home])?;
    delete_crds(cp)
}

/// `kubectl apply --dry-run=server -n <namespace> -f <file>` (or `-k <dir>`); the output.
fn dry_run(
    cp: &ControlPlane,
    namespace: &str,
    flag: &str,
    path: &std::path::Path,
) -> Result<std::process::Output, Error> {
    chart_support::output(
        cp.command("kubectl")
            .args(["apply", "--dry-run=server", "-n", namespace, flag])
            .arg(path),
        "kubectl apply --dry-run=server",
    )
}

#[test]
fn every_example_applies_cleanly_against_the_installed_crds() -> Result<(), Error> {
    let cp = ControlPlane::shared()?;
    let _crds = crd_lock();
    delete_crds(cp)?;
    let home = namespace(cp, "chart-examples-home")?;
    let target = namespace(cp, "chart-examples")?;
    install(
        cp,
        "examples",
        &chart_dir(),
        home.name(),
        &["replicaCount=1"],
    )?;
    wait_crds(cp)?;

    let examples = chart_dir().join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&examples)
        .unwrap_or_else(|err| panic!("{err}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for file in &files {
        let out = dry_run(cp, target.name(), "-f", file)?;
        assert!(
            out.status.success(),
            "{} does not apply: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The kustomization, moved into the test's namespace by an overlay.
    let temp = TempDir::new("examples");
    copy_dir(&examples, &temp.path().join("base"));
    let overlay = temp.path().join("overlay");
    std::fs::create_dir_all(&overlay).unwrap_or_else(|err| panic!("{err}"));
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {}\nresources:\n  - ../base\n",
            target.name()
        ),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let out = dry_run(cp, target.name(), "-k", &overlay)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kustomization: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for object in [
        "sstpgateway.sstp.io/office",
        "sstpgateway.sstp.io/branch",
        "sstpuser.sstp.io/alice",
        "sstpuser.sstp.io/bob",
        "secret/bob-password",
    ] {
        assert!(stdout.contains(object), "{object} missing from {stdout}");
    }

    // The same dry run refuses a broken gateway, so the passes above mean something.
    let broken = temp.path().join("broken.yaml");
    let gateway =
        std::fs::read_to_string(examples.join("gateway-builtin-ca.yaml")).unwrap_or_default();
    assert!(gateway.contains("addressPool: 10.8.0.0/24"));
    std::fs::write(
        &broken,
        gateway.replace("addressPool: 10.8.0.0/24", "addressPool: 10.8.0.1/24"),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let out = dry_run(cp, target.name(), "-f", &broken)?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("addressPool"));

    helm_ok(cp, &["uninstall", "examples", "--namespace", home.name()])?;
    delete_crds(cp)
}

#[test]
fn a_release_named_like_a_yaml_boolean_installs() -> Result<(), Error> {
    // `app.kubernetes.io/instance: y` unquoted would be a YAML 1.1 boolean, which the API
    // server's decoding of Helm's manifest refuses for a label value.
    let cp = ControlPlane::shared()?;
    let ns = namespace(cp, "chart-yaml-boolean")?;
    install(cp, "y", &chart_dir(), ns.name(), &["installCRDs=false"])?;
    let deployment = get_json(cp, &["deployment", "y-sstp-operator", "-n", ns.name()])?;
    let labels = &deployment.unwrap_or_default()["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/instance"], "y");
    helm_ok(cp, &["uninstall", "y", "--namespace", ns.name()])?;
    Ok(())
}
