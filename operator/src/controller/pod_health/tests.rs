use serde_json::{Value, json};

use super::*;

const HASH: &str = "current";

/// A pod of template `hash` created at second `created`, with `status`.
fn pod(name: &str, hash: &str, created: i64, status: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "creationTimestamp": jiff::Timestamp::from_second(created).unwrap().to_string(),
            "annotations": {TEMPLATE_HASH_ANNOTATION: hash},
        },
        "status": status,
    }))
    .unwrap()
}

fn ready() -> Value {
    json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
}

fn sysctl_forbidden() -> Value {
    json!({
        "phase": "Failed",
        "reason": "SysctlForbidden",
        "message": "Pod was rejected: forbidden sysctl: \"net.ipv4.ip_forward\" not allowlisted",
    })
}

fn waiting(container: &str, reason: &str, message: &str) -> Value {
    json!({
        "phase": "Pending",
        "containerStatuses": [{
            "name": container, "image": "gw", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": message}},
        }],
    })
}

fn deployment(conditions: Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "gw"},
        "spec": {
            "selector": {},
            "template": {"metadata": {"annotations": {TEMPLATE_HASH_ANNOTATION: HASH}}},
        },
        "status": {"conditions": conditions},
    }))
    .unwrap()
}

fn no_conditions() -> Deployment {
    deployment(json!([]))
}

/// (case, pods, deployment, desired) -> expected (reason, words the message must hold).
#[test]
fn each_way_a_pod_cannot_start_gives_its_reason_and_names_the_pod() {
    let psa = deployment(json!([{
        "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
        "message": "pods \"gw-5c7d8-x2b4q\" is forbidden: violates PodSecurity \"baseline:latest\": hostPath volumes (volume \"tun\")",
    }]));
    let crash = json!({
        "phase": "Running",
        "initContainerStatuses": [{
            "name": "enable-ip-forward", "image": "gw", "imageID": "", "ready": false,
            "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
            "lastState": {"terminated": {"exitCode": 1, "message": "error: cannot turn on IPv4 forwarding\n"}},
        }],
    });
    let unschedulable = json!({
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "message": "0/3 nodes are available: 3 Insufficient cpu."}],
    });
    type Case<'a> = (
        &'a str,
        Vec<Pod>,
        Deployment,
        i32,
        Option<(&'a str, &'a [&'a str])>,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "all ready",
            vec![pod("gw-a", HASH, 1, ready())],
            no_conditions(),
            1,
            None,
        ),
        (
            "the kubelet refuses the sysctl",
            vec![pod("gw-a", HASH, 1, sysctl_forbidden())],
            no_conditions(),
            1,
            Some((
                "SysctlForbidden",
                &[
                    "pod gw-a",
                    "not allowlisted",
                    "--allowed-unsafe-sysctls",
                    "initContainer",
                ],
            )),
        ),
        (
            "the oldest rejected pod is named, not the newest replacement",
            vec![
                pod("gw-zzz", HASH, 1, sysctl_forbidden()),
                pod("gw-aaa", HASH, 5, sysctl_forbidden()),
                pod("gw-mmm", HASH, 9, json!({"phase": "Pending"})),
            ],
            no_conditions(),
            1,
            Some(("SysctlForbidden", &["pod gw-zzz"])),
        ),
        (
            "a failed pod of an earlier template is a leftover",
            vec![pod("gw-old", "earlier", 1, sysctl_forbidden())],
            no_conditions(),
            1,
            None,
        ),
        (
            "a failed pod no longer matters once enough pods are ready",
            vec![
                pod("gw-a", HASH, 1, sysctl_forbidden()),
                pod("gw-b", HASH, 2, ready()),
            ],
            no_conditions(),
            1,
            None,
        ),
        (
            "another failure",
            vec![pod(
                "gw-a",
                HASH,
                1,
                json!({"phase": "Failed", "reason": "Evicted", "message": "low on memory"}),
            )],
            no_conditions(),
            1,
            Some(("PodFailed", &["pod gw-a failed: Evicted: low on memory"])),
        ),
        (
            "Pod Security admission refuses the ReplicaSet's pods",
            vec![],
            psa,
            2,
            Some((
                "FailedCreate",
                &[
                    "the ReplicaSet cannot create pods: forbidden: violates PodSecurity",
                    "pod-security.kubernetes.io/enforce=privileged",
                ],
            )),
        ),
        (
            "no node fits",
            vec![pod("gw-a", HASH, 1, unschedulable)],
            no_conditions(),
            1,
            Some((
                "Unschedulable",
                &["pod gw-a cannot be scheduled", "Insufficient cpu"],
            )),
        ),
        (
            "the image cannot be pulled",
            vec![pod(
                "gw-a",
                HASH,
                1,
                waiting(
                    "gateway",
                    "ImagePullBackOff",
                    "Back-off pulling image \"gw\"",
                ),
            )],
            no_conditions(),
            1,
            Some((
                "ImagePullBackOff",
                &["pod gw-a: container gateway: ImagePullBackOff: Back-off pulling image"],
            )),
        ),
        (
            "a never-pull image is missing",
            vec![pod(
                "gw-a",
                HASH,
                1,
                waiting(
                    "gateway",
                    "ErrImageNeverPull",
                    "not present with pull policy of Never",
                ),
            )],
            no_conditions(),
            1,
            Some(("ErrImageNeverPull", &["pull policy of Never"])),
        ),
        (
            "the init container crashes: its last words are quoted",
            vec![pod("gw-a", HASH, 1, crash)],
            no_conditions(),
            1,
            Some((
                "CrashLoopBackOff",
                &[
                    "init container enable-ip-forward: CrashLoopBackOff",
                    "last exit code 1: error: cannot turn on IPv4 forwarding",
                ],
            )),
        ),
        (
            "a missing Secret key",
            vec![pod(
                "gw-a",
                HASH,
                1,
                waiting(
                    "gateway",
                    "CreateContainerConfigError",
                    "secret \"x\" not found",
                ),
            )],
            no_conditions(),
            1,
            Some(("CreateContainerConfigError", &["secret \"x\" not found"])),
        ),
        (
            "still creating is no problem",
            vec![pod(
                "gw-a",
                HASH,
                1,
                waiting("gateway", "ContainerCreating", ""),
            )],
            no_conditions(),
            1,
            None,
        ),
        (
            "a failed pod outranks a slow pull of another",
            vec![
                pod(
                    "gw-a",
                    HASH,
                    1,
                    waiting("gateway", "ErrImagePull", "timeout"),
                ),
                pod("gw-b", HASH, 2, sysctl_forbidden()),
            ],
            no_conditions(),
            2,
            Some(("SysctlForbidden", &["pod gw-b"])),
        ),
    ];
    for (case, pods, deployment, desired, expected) in cases {
        let got = pod_problem(&pods, Some(&deployment), desired);
        match (expected, got) {
            (None, None) => {}
            (Some((reason, words)), Some(problem)) => {
                assert_eq!(problem.reason, reason, "{case}: {problem:?}");
                for word in words {
                    assert!(
                        problem.message.contains(word),
                        "{case}: {word:?} not in {problem:?}"
                    );
                }
            }
            (expected, got) => panic!("{case}: expected {expected:?}, got {got:?}"),
        }
    }
}

#[test]
fn a_long_message_is_cut_on_a_character_boundary() {
    let long = "é".repeat(2000);
    let pods = [pod(
        "gw-a",
        HASH,
        1,
        json!({"phase": "Failed", "reason": "Evicted", "message": long}),
    )];
    let problem = pod_problem(&pods, Some(&no_conditions()), 1).unwrap();
    assert!(
        problem.message.len() <= MAX_MESSAGE + 3,
        "{}",
        problem.message.len()
    );
    assert!(problem.message.ends_with("..."));
}
