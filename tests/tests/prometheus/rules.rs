//! The chart's PrometheusRule rendered by helm, checked by promtool: `check rules` and one unit
//! test per alert; with its test.

// The constants and shared helpers live in the test's root.
use super::*;

/// `helm template` of the chart with `--set` values, without a control plane (helm needs none).
pub(super) fn render(sets: &[&str]) -> Result<Vec<Value>, Error> {
    let helm = sstp_e2e::k8s_bin_dir()?.join("helm");
    let mut command = Command::new(helm);
    command.args(["template", RELEASE]).arg(chart_dir()).args([
        "--namespace",
        "sstp-system",
        "--kube-version",
        &kube_version(),
    ]);
    for set in sets {
        command.args(["--set", set]);
    }
    Ok(documents(&succeed(&mut command, "helm template")?))
}

/// The rule groups of the chart's PrometheusRule, rendered with `metrics.prometheusRule.enabled`
/// and `sets`: exactly what a Prometheus behind prometheus-operator would load.
pub(super) fn rule_groups(sets: &[&str]) -> Result<Value, Error> {
    let mut all = vec!["metrics.prometheusRule.enabled=true"];
    all.extend(sets);
    let docs = render(&all)?;
    Ok(find(&docs, "PrometheusRule", FULLNAME)["spec"]["groups"].clone())
}

/// A Prometheus rule file of `groups` (JSON is YAML).
pub(super) fn rule_file(groups: &Value) -> String {
    serde_json::to_string_pretty(&json!({ "groups": groups })).unwrap_or_default()
}

/// Every alerting rule of `groups`.
pub(super) fn alerts(groups: &Value) -> Vec<Value> {
    groups
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
        .filter(|rule| rule.get("alert").is_some())
        .collect()
}

pub(super) fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

#[test]
fn the_rendered_alerts_pass_promtool_check_rules_and_a_unit_test_each() -> Result<(), Error> {
    let Some(bins) = prometheus_or_skip() else {
        return Ok(());
    };
    let groups = rule_groups(&[])?;
    let alerts = alerts(&groups);
    assert_eq!(alerts.len(), ALERTS, "{groups:#}");
    let readme = std::fs::read_to_string(chart_dir().join("README.md"))
        .unwrap_or_else(|err| panic!("chart README: {err}"));
    for alert in &alerts {
        let name = text(&alert["alert"]);
        assert!(!text(&alert["labels"]["severity"]).is_empty(), "{alert:#}");
        for key in ["summary", "description", "runbook", "runbook_url"] {
            assert!(
                !text(&alert["annotations"][key]).is_empty(),
                "{name} has no {key}"
            );
        }
        // The runbook_url's anchor is the chart README's section of that alert.
        let anchor = format!("#{}", name.to_lowercase());
        assert!(
            text(&alert["annotations"]["runbook_url"]).ends_with(&anchor),
            "{name}: {}",
            alert["annotations"]["runbook_url"]
        );
        assert!(
            readme.contains(&format!("\n### {name}\n")),
            "the chart README has no runbook section ### {name}"
        );
    }

    let dir = TempDir::new("promtool-rules");
    std::fs::write(dir.path().join("rules.yaml"), rule_file(&groups))
        .unwrap_or_else(|err| panic!("{err}"));
    let tests = repo_dir().join("tests/prometheus/rules.test.yaml");
    std::fs::copy(&tests, dir.path().join("rules.test.yaml"))
        .unwrap_or_else(|err| panic!("{}: {err}", tests.display()));

    let check = bins.promtool(&["check", "rules", "rules.yaml"], dir.path(), "")?;
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && out.contains(&format!("SUCCESS: {ALERTS} rules found")),
        "promtool check rules: {out}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let test = bins.promtool(&["test", "rules", "rules.test.yaml"], dir.path(), "")?;
    assert!(
        test.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );

    // Every alert the chart renders has a case that fires it and one where it must stay quiet.
    let cases: Value = serde_norway::from_str(
        &std::fs::read_to_string(&tests).unwrap_or_else(|err| panic!("{err}")),
    )
    .unwrap_or_else(|err| panic!("{}: {err}", tests.display()));
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for case in cases["tests"].as_array().into_iter().flatten() {
        for eval in case["alert_rule_test"].as_array().into_iter().flatten() {
            let name = text(&eval["alertname"]).to_owned();
            if eval["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()) {
                firing.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    let rendered: BTreeSet<String> = alerts
        .iter()
        .map(|alert| text(&alert["alert"]).to_owned())
        .collect();
    assert_eq!(firing, rendered, "alerts with a case that fires them");
    assert_eq!(
        quiet, rendered,
        "alerts with a case where they must not fire"
    );
    Ok(())
}
