//! The operator against the real control plane: children a gateway stops wanting are deleted
//! (the ServiceMonitor and its Service when monitoring is turned off, the built-in CA's Secret
//! and the cert-manager Certificate when the TLS mode changes), and a same-named object the
//! gateway does not control is left alone.

#![allow(clippy::unwrap_used)]

mod operator_support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::{
    Api, Client,
    api::{DynamicObject, Patch, PatchParams},
};
use sstp_api::SstpGateway;
use sstp_e2e::{Error, eventually};

use operator_support::{Operator, TIMEOUT, create, setup, stand_in_crd, status_until};

async fn gateway(client: &Client, ns: &str, spec: serde_json::Value) -> Result<(), Error> {
    let mut full = serde_json::json!({"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24", "replicas": 1});
    full.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    create::<SstpGateway>(
        client,
        ns,
        serde_json::json!({
            "apiVersion": "sstp.io/v1alpha1", "kind": "SstpGateway",
            "metadata": {"name": "gw"}, "spec": full
        }),
    )
    .await?;
    Ok(())
}

async fn patch_spec(client: &Client, ns: &str, spec: serde_json::Value) -> Result<(), Error> {
    Api::<SstpGateway>::namespaced(client.clone(), ns)
        .patch(
            "gw",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "spec": spec })),
        )
        .await?;
    Ok(())
}

/// Waits until `get` finds the object (`present`) or not.
async fn until_present<K, F, Fut>(what: &str, present: bool, get: F) -> Result<(), Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Option<K>, kube::Error>>,
{
    eventually(what, TIMEOUT, || {
        let found = get();
        async move {
            // A CRD just established may answer 404 for a moment.
            let found = found.await.ok().flatten().is_some();
            Ok((found == present).then_some(()))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn turning_the_service_monitor_off_deletes_it_and_its_metrics_service() -> Result<(), Error> {
    let (client, namespace) = setup("prune-monitor").await?;
    let ns = namespace.name();
    let resource = sstp_operator::resources::service_monitor::api_resource();
    stand_in_crd(&client, &resource).await?;
    let operator = Operator::start(&client, ns, "op-a");
    gateway(
        &client,
        ns,
        serde_json::json!({"monitoring": {"serviceMonitor": {"enabled": true}}}),
    )
    .await?;
    let monitors: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    until_present("ServiceMonitor gw", true, || monitors.get_opt("gw")).await?;
    until_present("Service gw-metrics", true, || {
        services.get_opt("gw-metrics")
    })
    .await?;

    patch_spec(
        &client,
        ns,
        serde_json::json!({"monitoring": {"serviceMonitor": {"enabled": false}}}),
    )
    .await?;
    until_present("ServiceMonitor gw deleted", false, || {
        monitors.get_opt("gw")
    })
    .await?;
    until_present("Service gw-metrics deleted", false, || {
        services.get_opt("gw-metrics")
    })
    .await?;
    assert!(
        services.get_opt("gw").await?.is_some(),
        "the public Service stays"
    );
    operator.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn switching_the_tls_mode_deletes_the_built_in_ca_and_then_the_cert_manager_certificate()
-> Result<(), Error> {
    let (client, namespace) = setup("prune-tls").await?;
    let ns = namespace.name();
    let resource = sstp_operator::certs::cert_manager::api_resource();
    stand_in_crd(&client, &resource).await?;
    let operator = Operator::start(&client, ns, "op-a");
    gateway(&client, ns, serde_json::json!({"tls": {"selfManaged": {}}})).await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let certificates: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    until_present("Secret gw-ca", true, || secrets.get_opt("gw-ca")).await?;

    // Built-in CA -> cert-manager: the CA Secret goes, a Certificate comes.
    patch_spec(
        &client,
        ns,
        serde_json::json!({"tls": {"selfManaged": null,
            "certManager": {"issuerRef": {"name": "le", "kind": "ClusterIssuer"}}}}),
    )
    .await?;
    until_present("Certificate gw", true, || certificates.get_opt("gw")).await?;
    until_present("Secret gw-ca deleted", false, || secrets.get_opt("gw-ca")).await?;
    assert!(
        secrets.get_opt("gw-tls").await?.is_some(),
        "gw-tls stays: cert-manager writes into it"
    );

    // cert-manager -> bring your own: the Certificate goes (else cert-manager would keep
    // rewriting gw-tls).
    patch_spec(
        &client,
        ns,
        serde_json::json!({"tls": {"certManager": null, "secretName": "mine"}}),
    )
    .await?;
    until_present("Certificate gw deleted", false, || {
        certificates.get_opt("gw")
    })
    .await?;
    operator.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_same_named_object_the_gateway_does_not_control_is_left_alone() -> Result<(), Error> {
    let (client, namespace) = setup("prune-foreign").await?;
    let ns = namespace.name();
    // Made by someone else before the gateway: names the operator would delete if they were its.
    create::<Secret>(
        &client,
        ns,
        serde_json::json!({"metadata": {"name": "gw-ca"}, "stringData": {"note": "not the operator's"}}),
    )
    .await?;
    create::<Service>(
        &client,
        ns,
        serde_json::json!({"metadata": {"name": "gw-metrics"},
            "spec": {"ports": [{"port": 9999}]}}),
    )
    .await?;
    let operator = Operator::start(&client, ns, "op-a");
    // Bring-your-own TLS and no monitoring: neither gw-ca nor gw-metrics is wanted.
    gateway(
        &client,
        ns,
        serde_json::json!({"tls": {"secretName": "mine"}}),
    )
    .await?;
    status_until(&client, ns, "the gateway reconciled", |status| {
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "CertificateReady" && c.reason == "SecretNotFound")
    })
    .await?;
    // And once more, after a change.
    patch_spec(&client, ns, serde_json::json!({"replicas": 2})).await?;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), ns);
    eventually("the change applied", TIMEOUT, || {
        let deployments = deployments.clone();
        async move {
            let replicas = deployments
                .get_opt("gw")
                .await?
                .and_then(|d| d.spec)
                .and_then(|s| s.replicas);
            Ok((replicas == Some(2)).then_some(()))
        }
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    assert!(
        secrets.get_opt("gw-ca").await?.is_some(),
        "someone else's gw-ca"
    );
    assert!(
        services.get_opt("gw-metrics").await?.is_some(),
        "someone else's gw-metrics"
    );
    operator.stop().await;
    Ok(())
}
