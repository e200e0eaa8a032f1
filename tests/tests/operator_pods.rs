//! The operator against the real control plane: when gateway pods cannot start, the SstpGateway
//! status says why, naming the pod and quoting Kubernetes, and clears once pods serve.
//!
//! There is no kubelet here, so the test writes pod status through the pods/status subresource
//! the way a kubelet would (a rejected pod, an image that cannot be pulled); Pod Security
//! admission and the ReplicaSet and Deployment controllers are the real ones.

#![allow(clippy::unwrap_used)]

mod operator_support;

use std::time::Duration;

use k8s_openapi::{
    api::core::v1::{Namespace, Pod},
    apimachinery::pkg::apis::meta::v1::Condition,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use sstp_api::{SstpGateway, SstpGatewayStatus};
use sstp_e2e::{Error, eventually};

use operator_support::{Operator, TIMEOUT, create, setup, status_until};

async fn gateway(client: &Client, ns: &str) -> Result<(), Error> {
    create::<SstpGateway>(
        client,
        ns,
        serde_json::json!({
            "apiVersion": "sstp.io/v1alpha1", "kind": "SstpGateway",
            "metadata": {"name": "gw"},
            "spec": {"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24", "replicas": 1}
        }),
    )
    .await?;
    Ok(())
}

/// The gateway's condition of `type_`, once `check` accepts it.
async fn condition_becomes(
    client: &Client,
    ns: &str,
    type_: &str,
    what: &str,
    check: impl Fn(&Condition) -> bool,
) -> Result<Condition, Error> {
    let find =
        |status: &SstpGatewayStatus| status.conditions.iter().find(|c| c.type_ == type_).cloned();
    let status = status_until(client, ns, what, |status| {
        find(status).is_some_and(|c| check(&c))
    })
    .await?;
    Ok(find(&status).expect("the condition status_until saw"))
}

/// The gateway's pods that have not failed, oldest first.
async fn live_pods(pods: &Api<Pod>) -> Result<Vec<Pod>, Error> {
    let mut live: Vec<Pod> = pods
        .list(&ListParams::default().labels("app.kubernetes.io/instance=gw"))
        .await?
        .items
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Failed"))
        .collect();
    live.sort_by_key(|p| p.metadata.creation_timestamp.clone());
    Ok(live)
}

/// Writes `status` into pod `name` as the kubelet would.
async fn kubelet_says(pods: &Api<Pod>, name: &str, status: serde_json::Value) -> Result<(), Error> {
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_that_cannot_start_are_named_in_the_status_with_the_kubelets_reason_until_one_serves()
-> Result<(), Error> {
    let (client, namespace) = setup("pod-status").await?;
    let ns = namespace.name();
    let operator = Operator::start(&client, ns, "op-a");
    gateway(&client, ns).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let first = eventually("the ReplicaSet's pod", TIMEOUT, || {
        let pods = pods.clone();
        async move { Ok(live_pods(&pods).await?.into_iter().next()) }
    })
    .await?;
    let first = first.name_any();

    // The image cannot be pulled.
    kubelet_says(
        &pods,
        &first,
        serde_json::json!({
            "phase": "Pending",
            "containerStatuses": [{
                "name": "gateway", "image": "example.invalid/sstp-gateway:test", "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff",
                    "message": "Back-off pulling image \"example.invalid/sstp-gateway:test\""}}
            }]
        }),
    )
    .await?;
    let available = condition_becomes(
        &client,
        ns,
        "Available",
        "Available=ImagePullBackOff",
        |c| c.reason == "ImagePullBackOff",
    )
    .await?;
    assert_eq!(available.status, "False");
    assert!(
        available.message.contains(&format!("pod {first}"))
            && available.message.contains("Back-off pulling image"),
        "{available:?}"
    );

    // The kubelet rejects the pod: the unsafe sysctl is not allowed on the node.
    kubelet_says(
        &pods,
        &first,
        serde_json::json!({
            "phase": "Failed",
            "reason": "SysctlForbidden",
            "message": "Pod was rejected: forbidden sysctl: \"net.ipv4.ip_forward\" not allowlisted",
            "containerStatuses": null
        }),
    )
    .await?;
    let ready = condition_becomes(&client, ns, "Ready", "Ready=SysctlForbidden", |c| {
        c.reason == "SysctlForbidden"
    })
    .await?;
    assert_eq!(ready.status, "False");
    for words in [
        format!("pod {first}"),
        "not allowlisted".to_owned(),
        "--allowed-unsafe-sysctls=net.ipv4.ip_forward".to_owned(),
        "spec.pod.ipForwarding".to_owned(),
    ] {
        assert!(ready.message.contains(&words), "{words}: {ready:?}");
    }
    let degraded = condition_becomes(&client, ns, "Degraded", "Degraded=True", |c| {
        c.status == "True"
    })
    .await?;
    assert_eq!(degraded.reason, "SysctlForbidden");

    // Nothing changes: the status is not written again (the rejected pod stays the one named).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let writes = operator.metrics.writes();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        operator.metrics.writes(),
        writes,
        "{}",
        operator.metrics.render()
    );

    // The ReplicaSet's replacement starts and turns ready: the leftover failed pod is forgotten.
    let replacement = eventually("a replacement pod", TIMEOUT, || {
        let pods = pods.clone();
        async move { Ok(live_pods(&pods).await?.into_iter().next()) }
    })
    .await?;
    let now = jiff::Timestamp::now().to_string();
    kubelet_says(
        &pods,
        &replacement.name_any(),
        serde_json::json!({
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}
            ]
        }),
    )
    .await?;
    condition_becomes(&client, ns, "Ready", "Ready=True", |c| c.status == "True").await?;
    let degraded = condition_becomes(&client, ns, "Degraded", "Degraded=False", |c| {
        c.status == "False"
    })
    .await?;
    assert_eq!(degraded.reason, "AsExpected");
    operator.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_security_admission_refusing_the_pods_is_named_in_the_status() -> Result<(), Error> {
    let (client, namespace) = setup("pod-security").await?;
    let ns = namespace.name();
    // What a cluster that enforces "baseline" everywhere does to gateway pods.
    Api::<Namespace>::all(client.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": "baseline"
            }}})),
        )
        .await?;
    let operator = Operator::start(&client, ns, "op-a");
    gateway(&client, ns).await?;
    let ready = condition_becomes(&client, ns, "Ready", "Ready=FailedCreate", |c| {
        c.reason == "FailedCreate"
    })
    .await?;
    assert_eq!(ready.status, "False");
    for words in [
        "the ReplicaSet cannot create pods",
        "violates PodSecurity \"baseline",
        "pod-security.kubernetes.io/enforce=privileged",
    ] {
        assert!(ready.message.contains(words), "{words}: {ready:?}");
    }
    assert!(
        !ready.message.contains("pods \"gw-"),
        "the retried pod's name is left out, so retries do not rewrite the status: {ready:?}"
    );
    let available = condition_becomes(&client, ns, "Available", "Available=FailedCreate", |c| {
        c.reason == "FailedCreate"
    })
    .await?;
    assert!(
        available.message.starts_with("0 of 1 pods available; "),
        "{available:?}"
    );
    operator.stop().await;
    Ok(())
}
