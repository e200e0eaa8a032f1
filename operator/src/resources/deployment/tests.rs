use super::*;
use crate::resources::fixtures;

fn build(gateway: &SstpGateway, config: &str) -> Deployment {
    build_with(gateway, config, None)
}

fn build_with(
    gateway: &SstpGateway,
    config: &str,
    default_pull_policy: Option<ImagePullPolicy>,
) -> Deployment {
    let owner = Owner::of(gateway).unwrap();
    deployment(
        gateway,
        &owner,
        &PodInputs {
            default_image: "example/sstp-gateway:1",
            default_pull_policy,
            config_json: config,
        },
    )
}

fn template_annotation(deployment: &Deployment, key: &str) -> String {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(key))
        .cloned()
        .unwrap()
}

fn pod_of(deployment: Deployment) -> PodSpec {
    deployment.spec.unwrap().template.spec.unwrap()
}

fn with_forwarding(mode: IpForwarding) -> SstpGateway {
    let mut gateway = fixtures::minimal();
    gateway.spec.pod.ip_forwarding = mode;
    gateway
}

fn sysctls(pod: &PodSpec) -> Vec<(String, String)> {
    pod.security_context
        .as_ref()
        .and_then(|s| s.sysctls.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.name, s.value))
        .collect()
}

#[test]
fn by_default_forwarding_is_the_pod_sysctl_and_there_is_no_init_container() {
    assert_eq!(
        fixtures::minimal().spec.pod.ip_forwarding,
        IpForwarding::PodSysctl
    );
    let pod = pod_of(build(&fixtures::minimal(), "{}"));
    assert_eq!(
        sysctls(&pod),
        [("net.ipv4.ip_forward".to_owned(), "1".to_owned())]
    );
    assert!(pod.init_containers.is_none());
}

#[test]
fn init_container_mode_runs_the_gateway_image_privileged_and_only_that_container() {
    let mut gateway = with_forwarding(IpForwarding::InitContainer);
    gateway.spec.pod.image = Some("local/gw:dev".into());
    gateway.spec.pod.image_pull_policy = Some(ImagePullPolicy::Never);
    let pod = pod_of(build(&gateway, "{}"));
    assert!(sysctls(&pod).is_empty(), "no unsafe sysctl in this mode");
    let init = pod.init_containers.clone().unwrap();
    assert_eq!(init.len(), 1);
    let init = &init[0];
    assert_eq!(init.name, "enable-ip-forward");
    assert_eq!(init.image.as_deref(), Some("local/gw:dev"));
    assert_eq!(init.image_pull_policy.as_deref(), Some("Never"));
    assert!(
        init.command.is_none(),
        "the image's entrypoint is the binary"
    );
    assert_eq!(init.args.clone().unwrap(), ["enable-ip-forward"]);
    let security = init.security_context.clone().unwrap();
    assert_eq!(security.privileged, Some(true));
    assert_eq!(
        init.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
    let gateway_security = pod.containers[0].security_context.clone().unwrap();
    assert_eq!(gateway_security.privileged, Some(false));
    assert_eq!(gateway_security.allow_privilege_escalation, Some(false));
}

#[test]
fn inherit_mode_sets_neither_a_sysctl_nor_an_init_container() {
    let pod = pod_of(build(&with_forwarding(IpForwarding::InheritFromNode), "{}"));
    assert!(sysctls(&pod).is_empty());
    assert!(pod.init_containers.is_none());
}

#[test]
fn the_pull_policy_comes_from_the_spec_else_the_operator_else_kubernetes() {
    let plain = fixtures::minimal();
    let policy = |d: Deployment| pod_of(d).containers[0].image_pull_policy.clone();
    assert_eq!(policy(build(&plain, "{}")), None);
    assert_eq!(
        policy(build_with(
            &plain,
            "{}",
            Some(ImagePullPolicy::IfNotPresent)
        )),
        Some("IfNotPresent".into())
    );
    let mut always = fixtures::minimal();
    always.spec.pod.image_pull_policy = Some(ImagePullPolicy::Always);
    assert_eq!(
        policy(build_with(&always, "{}", Some(ImagePullPolicy::Never))),
        Some("Always".into())
    );
}

#[test]
fn the_template_hash_follows_the_template_and_only_it() {
    let hash = |d: &Deployment| template_annotation(d, TEMPLATE_HASH_ANNOTATION);
    let sysctl = build(&fixtures::minimal(), "{}");
    assert_eq!(hash(&sysctl), hash(&build(&fixtures::minimal(), "{}")));
    let init = build(&with_forwarding(IpForwarding::InitContainer), "{}");
    assert_ne!(hash(&sysctl), hash(&init));
    let mut more = fixtures::minimal();
    more.spec.replicas = 5;
    assert_eq!(
        hash(&sysctl),
        hash(&build(&more, "{}")),
        "replicas are not the template"
    );
}

#[test]
fn pods_spread_over_nodes_unless_the_gateway_says_how() {
    let spread = |gateway: &SstpGateway| {
        build(gateway, "{}")
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .topology_spread_constraints
            .unwrap()
    };
    let default = spread(&fixtures::minimal());
    assert_eq!(default.len(), 1);
    let constraint = &default[0];
    assert_eq!(constraint.topology_key, "kubernetes.io/hostname");
    assert_eq!(constraint.max_skew, 1);
    // One node still runs every replica.
    assert_eq!(constraint.when_unsatisfiable, "ScheduleAnyway");
    let labels = constraint
        .label_selector
        .as_ref()
        .and_then(|s| s.match_labels.clone())
        .unwrap();
    assert_eq!(labels["app.kubernetes.io/name"], "sstp-gateway");
    assert_eq!(labels["app.kubernetes.io/instance"], "gw");
    assert_eq!(
        constraint.match_label_keys.as_deref(),
        Some(&["pod-template-hash".to_owned()][..])
    );

    let own = fixtures::gateway(serde_json::json!({
        "hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24",
        "pod": {"topologySpreadConstraints": [{
            "maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule"
        }]}
    }));
    let own = spread(&own);
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].topology_key, "topology.kubernetes.io/zone");
    assert_eq!(own[0].when_unsatisfiable, "DoNotSchedule");
}

#[test]
fn the_deployment_never_drops_below_the_desired_replicas_and_probes_the_admin_port() {
    let deployment = build(&fixtures::minimal(), "{}");
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let rolling = spec.strategy.unwrap().rolling_update.unwrap();
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
    assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)));
    let pod = spec.template.spec.unwrap();
    let container = &pod.containers[0];
    let readiness = container
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(readiness.path.as_deref(), Some("/readyz"));
    assert_eq!(readiness.port, IntOrString::String("admin".into()));
    let liveness = container
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(liveness.path.as_deref(), Some("/healthz"));
    assert_eq!(container.image.as_deref(), Some("example/sstp-gateway:1"));
    assert_eq!(
        container.args.as_ref().unwrap(),
        &["run", "--config", "/etc/sstp-gateway/config/config.json"]
    );
    assert_eq!(pod.service_account_name.as_deref(), Some("gw"));
}

#[test]
fn spec_logging_becomes_the_gateway_flags_and_the_default_adds_none() {
    let mut gateway = fixtures::minimal();
    gateway.spec.logging.format = LogFormat::Json;
    gateway.spec.logging.omit_user_names = true;
    let deployment = build(&gateway, "{}");
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        pod.containers[0].args.as_ref().unwrap(),
        &[
            "run",
            "--config",
            "/etc/sstp-gateway/config/config.json",
            "--log-format",
            "json",
            "--audit-omit-user-names"
        ]
    );
}

#[test]
fn the_container_gets_only_net_admin_and_net_bind_service_and_the_tun_device() {
    let deployment = build(&fixtures::minimal(), "{}");
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let security = pod.containers[0].security_context.clone().unwrap();
    let caps = security.capabilities.unwrap();
    assert_eq!(caps.drop.unwrap(), ["ALL"]);
    assert_eq!(caps.add.unwrap(), ["NET_ADMIN", "NET_BIND_SERVICE"]);
    assert_eq!(security.privileged, Some(false));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let tun = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "tun")
        .unwrap();
    assert_eq!(tun.host_path.unwrap().type_.as_deref(), Some("CharDevice"));
}

#[test]
fn a_config_change_changes_the_pod_template_and_spec_knobs_reach_the_pod() {
    let mut gateway = fixtures::minimal();
    gateway.spec.pod.image = Some("mirror/gw:2".into());
    gateway
        .spec
        .pod
        .node_selector
        .insert("zone".into(), "a".into());
    let first = build(&gateway, "{\"a\":1}");
    let second = build(&gateway, "{\"a\":2}");
    let hash = |d: &Deployment| template_annotation(d, CONFIG_HASH_ANNOTATION);
    assert_ne!(hash(&first), hash(&second));
    let pod = first.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.containers[0].image.as_deref(), Some("mirror/gw:2"));
    assert_eq!(pod.node_selector.unwrap()["zone"], "a");
}
