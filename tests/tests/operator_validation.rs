//! The CRDs' schema and CEL rules, enforced by the real apiserver: bad objects are refused with a
//! message that names the field.

#![allow(clippy::unwrap_used)]

mod operator_support;

use kube::{Api, api::PostParams};
use sstp_api::SstpGateway;
use sstp_e2e::{ControlPlane, Error, TestNamespace};

use operator_support::install_crds;

fn gateway(spec: serde_json::Value) -> SstpGateway {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "sstp.io/v1alpha1", "kind": "SstpGateway",
        "metadata": {"name": "gw"}, "spec": spec
    }))
    .expect("the test object deserializes")
}

async fn refused(api: &Api<SstpGateway>, spec: serde_json::Value) -> String {
    match api
        .create(&PostParams::default(), &gateway(spec.clone()))
        .await
    {
        Ok(_) => panic!("the apiserver accepted {spec}"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            status.message
        }
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_gateways_are_refused_with_a_message_naming_the_field() -> Result<(), Error> {
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.client().await?;
    install_crds(&client).await?;
    let namespace = TestNamespace::create(control_plane, &client, "validation").await?;
    let api: Api<SstpGateway> = Api::namespaced(client, namespace.name());

    let message = refused(
        &api,
        serde_json::json!({"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/33"}),
    )
    .await;
    assert!(message.contains("spec.addressPool"), "{message}");

    let message = refused(
        &api,
        serde_json::json!({"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.1/24"}),
    )
    .await;
    assert!(message.contains("spec.addressPool"), "{message}");

    let message = refused(
        &api,
        serde_json::json!({
            "hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24",
            "tls": {"selfManaged": {}, "secretName": "mine"}
        }),
    )
    .await;
    assert!(
        message.contains("spec.tls") && message.contains("exactly one"),
        "{message}"
    );

    let message = refused(
        &api,
        serde_json::json!({"hostnames": ["bad_host..example"], "addressPool": "10.8.0.0/24"}),
    )
    .await;
    assert!(message.contains("spec.hostnames"), "{message}");

    let message = refused(&api, serde_json::json!({"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24", "replicas": -1})).await;
    assert!(message.contains("spec.replicas"), "{message}");

    // A drain must leave the sessions time to end after CALL_DISCONNECT, defaults included.
    for drain in [
        serde_json::json!({"gracePeriodSeconds": 6}),
        serde_json::json!({"disconnectDelaySeconds": 26}),
        serde_json::json!({"gracePeriodSeconds": 60, "disconnectDelaySeconds": 56}),
    ] {
        let message = refused(
            &api,
            serde_json::json!({"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24", "drain": drain}),
        )
        .await;
        assert!(
            message.contains(
                "drain.gracePeriodSeconds must be at least drain.disconnectDelaySeconds + 5"
            ),
            "{message}"
        );
    }
    let message = refused(
        &api,
        serde_json::json!({"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24", "drain": {"gracePeriodSeconds": 4000}}),
    )
    .await;
    assert!(
        message.contains("drain.gracePeriodSeconds must be 5 to 3600"),
        "{message}"
    );
    api.create(
        &PostParams::default(),
        &gateway(serde_json::json!({"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24", "drain": {"gracePeriodSeconds": 60, "disconnectDelaySeconds": 55}})),
    )
    .await
    .expect("a drain with room for the sessions is accepted");
    api.delete("gw", &Default::default())
        .await
        .expect("deleting the accepted gateway");

    // Without NAT the pods' pools would hand one address to two clients (replicas default to 2).
    for spec in [
        serde_json::json!({"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24", "nat": false}),
        serde_json::json!({"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24", "nat": false, "replicas": 3}),
    ] {
        let message = refused(&api, spec).await;
        assert!(
            message.contains("nat: false needs replicas: 1"),
            "{message}"
        );
    }
    for (name, spec) in [
        (
            "one-pod",
            serde_json::json!({"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24", "nat": false, "replicas": 1}),
        ),
        (
            "with-nat",
            serde_json::json!({"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24", "replicas": 3}),
        ),
    ] {
        let mut object = gateway(spec);
        object.metadata.name = Some(name.into());
        api.create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|err| panic!("{name} refused: {err}"));
    }

    // A PROXY header is believed only from named load balancers (issue: hostile clients).
    let message = refused(
        &api,
        serde_json::json!({"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24", "proxyProtocol": true}),
    )
    .await;
    assert!(
        message.contains("proxyProtocol needs trustedProxies"),
        "{message}"
    );
    let message = refused(
        &api,
        serde_json::json!({"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24", "trustedProxies": ["10.0.0.0/8"]}),
    )
    .await;
    assert!(
        message.contains("trustedProxies has no effect"),
        "{message}"
    );
    let message = refused(
        &api,
        serde_json::json!({"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24", "proxyProtocol": true, "trustedProxies": ["10.0.0.300/8"]}),
    )
    .await;
    assert!(message.contains("spec.trustedProxies"), "{message}");
    let message = refused(
        &api,
        serde_json::json!({"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24", "limits": {"maxPendingConnections": 0}}),
    )
    .await;
    assert!(
        message.contains("spec.limits.maxPendingConnections"),
        "{message}"
    );
    for backlog in [0, 65536] {
        let message = refused(
            &api,
            serde_json::json!({"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24", "limits": {"listenBacklog": backlog}}),
        )
        .await;
        assert!(
            message.contains("limits.listenBacklog must be within 1..65535"),
            "{message}"
        );
    }
    api.create(
        &PostParams::default(),
        &gateway(serde_json::json!({
            "hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24",
            "proxyProtocol": true, "trustedProxies": ["10.0.0.0/8", "2001:db8::/32"]
        })),
    )
    .await
    .map_err(|err| panic!("a gateway behind trusted proxies is accepted: {err}"))
    .ok();
    api.delete("gw", &Default::default()).await.ok();

    let message = refused(&api, serde_json::json!({"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24", "dns": ["not-an-ip"]})).await;
    assert!(message.contains("spec.dns"), "{message}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_users_are_refused_with_a_message_naming_the_field() -> Result<(), Error> {
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.client().await?;
    install_crds(&client).await?;
    let namespace = TestNamespace::create(control_plane, &client, "user-validation").await?;
    let api: Api<sstp_api::SstpUser> = Api::namespaced(client, namespace.name());
    for (spec, field) in [
        (
            serde_json::json!({"staticAddress": "10.8.0.300"}),
            "spec.staticAddress",
        ),
        (serde_json::json!({"username": " padded"}), "spec.username"),
        (serde_json::json!({"maxSessions": 0}), "spec.maxSessions"),
        (
            serde_json::json!({"passwordSecretRef": {"name": "Not_A_Name"}}),
            "spec.passwordSecretRef.name",
        ),
    ] {
        let user: sstp_api::SstpUser = serde_json::from_value(serde_json::json!({
            "apiVersion": "sstp.io/v1alpha1", "kind": "SstpUser",
            "metadata": {"name": "u"}, "spec": spec
        }))
        .expect("the test object deserializes");
        match api.create(&PostParams::default(), &user).await {
            Err(kube::Error::Api(status)) => assert!(
                status.message.contains(field),
                "{field}: {}",
                status.message
            ),
            other => panic!("{spec} was not refused: {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_gateway_gets_its_defaults_and_its_address_pool_cannot_change() -> Result<(), Error>
{
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.client().await?;
    install_crds(&client).await?;
    let namespace = TestNamespace::create(control_plane, &client, "immutable").await?;
    let api: Api<SstpGateway> = Api::namespaced(client, namespace.name());
    let created = api
        .create(
            &PostParams::default(),
            &gateway(
                serde_json::json!({"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24"}),
            ),
        )
        .await?;
    assert_eq!(created.spec.replicas, 2);
    assert!(created.spec.tls.self_managed.is_some());
    assert_eq!(created.spec.service.ports.sstp, 443);

    let mut changed = created.clone();
    changed.spec.address_pool = "10.9.0.0/24".to_owned();
    match api.replace("gw", &PostParams::default(), &changed).await {
        Err(kube::Error::Api(status)) => {
            assert!(
                status.message.contains("spec.addressPool") && status.message.contains("immutable"),
                "{}",
                status.message
            );
        }
        other => panic!("the address pool changed: {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn ip_forwarding_defaults_to_the_pod_sysctl_and_unknown_modes_or_pull_policies_are_refused()
-> Result<(), Error> {
    use kube::api::{ApiResource, DynamicObject};
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.client().await?;
    install_crds(&client).await?;
    let namespace = TestNamespace::create(control_plane, &client, "validation-pod").await?;
    // Untyped, so values the Rust types would not even parse reach the apiserver.
    let resource = ApiResource::erase::<SstpGateway>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client, namespace.name(), &resource);
    let object = |name: &str, pod: serde_json::Value| -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "sstp.io/v1alpha1", "kind": "SstpGateway",
            "metadata": {"name": name},
            "spec": {"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24", "pod": pod}
        }))
        .expect("a valid DynamicObject")
    };
    for (pod, field, allowed) in [
        (
            serde_json::json!({"ipForwarding": "sysctl"}),
            "spec.pod.ipForwarding",
            "\"podSysctl\", \"initContainer\", \"inheritFromNode\"",
        ),
        (
            serde_json::json!({"imagePullPolicy": "Sometimes"}),
            "spec.pod.imagePullPolicy",
            "\"Always\", \"IfNotPresent\", \"Never\"",
        ),
    ] {
        match api
            .create(&PostParams::default(), &object("gw-bad", pod.clone()))
            .await
        {
            Ok(_) => panic!("the apiserver accepted {pod}"),
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{status:?}");
                assert!(
                    status.message.contains(field) && status.message.contains(allowed),
                    "{}",
                    status.message
                );
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    let stored = api
        .create(
            &PostParams::default(),
            &object("gw-default", serde_json::json!({})),
        )
        .await?;
    assert_eq!(stored.data["spec"]["pod"]["ipForwarding"], "podSysctl");
    Ok(())
}
