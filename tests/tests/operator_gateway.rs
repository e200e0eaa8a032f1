//! The operator against the real control plane: children, users document, certificate, live
//! user changes, garbage collection, no writes after a restart, one leader among two.

#![allow(clippy::unwrap_used)]

mod operator_support;

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::{
    apps::v1::Deployment,
    coordination::v1::Lease,
    core::v1::{ConfigMap, Secret, Service, ServiceAccount},
    policy::v1::PodDisruptionBudget,
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use sstp_api::{SstpGateway, SstpUser, condition::is_true};
use sstp_e2e::{Error, eventually};
use sstp_gateway::pki::CertInfo;

use operator_support::{
    Operator, TIMEOUT, create, mark_pods_ready, nt_hash_hex, password_secret, setup, users_document,
};

/// Live user changes must reach `<gw>-users` within this (a bounded wait, not a benchmark).
const USER_CHANGE_DEADLINE: Duration = Duration::from_secs(1);

/// A gateway `gw` and users `alice` (password Secret) and `bob` (generated password).
async fn gateway_and_two_users(client: &Client, ns: &str) -> Result<(), Error> {
    password_secret(client, ns, "alice-password", "alice's secret").await?;
    create::<SstpGateway>(client, ns, serde_json::json!({
        "apiVersion": "sstp.io/v1alpha1", "kind": "SstpGateway",
        "metadata": {"name": "gw"},
        "spec": {"hostnames": ["vpn.example.com", "203.0.113.7"], "addressPool": "10.8.0.0/24", "replicas": 1}
    }))
    .await?;
    create::<SstpUser>(
        client,
        ns,
        serde_json::json!({
            "apiVersion": "sstp.io/v1alpha1", "kind": "SstpUser",
            "metadata": {"name": "alice"},
            "spec": {"passwordSecretRef": {"name": "alice-password"}, "staticAddress": "10.8.0.10"}
        }),
    )
    .await?;
    create::<SstpUser>(
        client,
        ns,
        serde_json::json!({
            "apiVersion": "sstp.io/v1alpha1", "kind": "SstpUser",
            "metadata": {"name": "bob"}, "spec": {"username": "Bob"}
        }),
    )
    .await?;
    Ok(())
}

/// Waits until `<gw>-users` satisfies `check`, within `timeout`.
async fn users_become(
    client: &Client,
    ns: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&sstp_api::UsersDocument) -> bool,
) -> Result<sstp_api::UsersDocument, Error> {
    eventually(what, timeout, || {
        let client = client.clone();
        let check = &check;
        async move {
            Ok(users_document(&client, ns, "gw")
                .await?
                .filter(|doc| check(doc)))
        }
    })
    .await
}

async fn generated_password(client: &Client, ns: &str) -> Result<String, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = eventually("bob-credentials", TIMEOUT, || {
        let secrets = secrets.clone();
        async move { Ok(secrets.get_opt("bob-credentials").await?) }
    })
    .await?;
    let bytes = secret
        .data
        .unwrap_or_default()
        .get("password")
        .cloned()
        .expect("password key");
    Ok(String::from_utf8(bytes.0).expect("utf-8 password"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_and_two_users_yield_every_child_the_users_document_and_a_fitting_certificate()
-> Result<(), Error> {
    let (client, namespace) = setup("children").await?;
    let ns = namespace.name();
    let operator = Operator::start(&client, ns, "op-a");
    gateway_and_two_users(&client, ns).await?;

    let bob_password = generated_password(&client, ns).await?;
    let doc = users_become(&client, ns, "both users in gw-users", TIMEOUT, |doc| {
        doc.users.len() == 2
    })
    .await?;
    assert_eq!(doc.users["alice"].nt_hash.0, nt_hash_hex("alice's secret"));
    assert_eq!(
        doc.users["alice"].static_address,
        Some("10.8.0.10".parse().unwrap())
    );
    assert_eq!(doc.users["Bob"].nt_hash.0, nt_hash_hex(&bob_password));

    // The PodDisruptionBudget is the last child a reconcile applies: once it exists, so do the
    // others read below (waiting for the Deployment alone raced the Service and the PDB on a
    // loaded machine: 1 failure in 8 runs under stress-ng).
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    eventually("PodDisruptionBudget gw", TIMEOUT, || {
        let api = budgets.clone();
        async move { Ok(api.get_opt("gw").await?) }
    })
    .await?;
    let deployment = Api::<Deployment>::namespaced(client.clone(), ns)
        .get("gw")
        .await?;
    let gateway = Api::<SstpGateway>::namespaced(client.clone(), ns)
        .get("gw")
        .await?;
    let owned_by_gateway =
        |refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
            refs.iter().any(|r| {
                r.kind == "SstpGateway"
                    && Some(&r.uid) == gateway.metadata.uid.as_ref()
                    && r.controller == Some(true)
            })
        };
    assert!(owned_by_gateway(deployment.owner_references()));
    let spec = deployment.spec.clone().unwrap();
    assert_eq!(spec.replicas, Some(1));
    let rolling = spec.strategy.unwrap().rolling_update.unwrap();
    assert_eq!(
        rolling.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0))
    );
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("gw"));
    assert!(pod.containers[0].readiness_probe.is_some());

    let service = Api::<Service>::namespaced(client.clone(), ns)
        .get("gw")
        .await?;
    let ports: Vec<i32> = service
        .spec
        .clone()
        .unwrap()
        .ports
        .unwrap()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, [443, 80]);
    assert!(owned_by_gateway(service.owner_references()));
    let role = Api::<Role>::namespaced(client.clone(), ns)
        .get("gw")
        .await?;
    assert_eq!(
        role.rules.unwrap()[0].resource_names.clone().unwrap(),
        ["gw-users", "gw-tls"]
    );
    for owned in [
        Api::<RoleBinding>::namespaced(client.clone(), ns)
            .get("gw")
            .await?
            .metadata,
        Api::<ServiceAccount>::namespaced(client.clone(), ns)
            .get("gw")
            .await?
            .metadata,
        Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
            .get("gw")
            .await?
            .metadata,
        Api::<ConfigMap>::namespaced(client.clone(), ns)
            .get("gw-config")
            .await?
            .metadata,
    ] {
        assert!(
            owned_by_gateway(owned.owner_references.as_deref().unwrap_or_default()),
            "{:?}",
            owned.name
        );
    }
    let config = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get("gw-config")
        .await?;
    sstp_api::GatewayConfig::from_json(&config.data.unwrap()["config.json"])
        .expect("a valid gateway config");

    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let tls = secrets.get("gw-tls").await?;
    assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = tls.data.clone().unwrap();
    let info = CertInfo::from_pem(std::str::from_utf8(&data["tls.crt"].0).unwrap())
        .expect("a certificate");
    assert!(info.matches_host("vpn.example.com") && info.matches_host("203.0.113.7"));
    assert!(info.server_auth);
    assert_eq!(info.crl_urls, ["http://vpn.example.com/sstp/ca.crl"]);
    assert!(data.contains_key("ca.crt") && data.contains_key("ca.crl"));
    assert!(
        secrets
            .get("gw-ca")
            .await?
            .data
            .unwrap()
            .contains_key("ca.key")
    );
    assert!(
        !data.contains_key("ca.key"),
        "the CA key never reaches the pods' Secret"
    );

    let bob = Api::<SstpUser>::namespaced(client.clone(), ns)
        .get("bob")
        .await?;
    let bob_status = bob.status.unwrap_or_default();
    assert_eq!(
        bob_status.credentials_secret.as_deref(),
        Some("bob-credentials")
    );

    // Play kubelet until the Deployment reports its pod available; then the gateway is Ready.
    let gateways: Api<SstpGateway> = Api::namespaced(client.clone(), ns);
    let ready = eventually("gateway Ready", TIMEOUT, || {
        let client = client.clone();
        let gateways = gateways.clone();
        async move {
            mark_pods_ready(&client, ns).await?;
            let gw = gateways.get("gw").await?;
            let status = gw.status.clone().unwrap_or_default();
            Ok(is_true(&status.conditions, "Ready").then_some(status))
        }
    })
    .await?;
    assert_eq!(ready.observed_generation, gateway.metadata.generation);
    assert!(is_true(&ready.conditions, "CertificateReady"));
    let certificate = ready.certificate.expect("certificate status");
    assert_eq!(certificate.sha256_fingerprint, info.fingerprint_hex());
    assert_eq!(ready.endpoints, ["vpn.example.com"]);
    assert_eq!(ready.users, Some(2));
    let alice = Api::<SstpUser>::namespaced(client.clone(), ns)
        .get("alice")
        .await?;
    assert_eq!(alice.status.unwrap_or_default().gateways, ["gw"]);
    operator.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn disabling_a_user_changing_a_password_and_deleting_a_user_each_reach_the_users_secret_within_a_second()
-> Result<(), Error> {
    let (client, namespace) = setup("live-users").await?;
    let ns = namespace.name();
    let operator = Operator::start(&client, ns, "op-a");
    gateway_and_two_users(&client, ns).await?;
    users_become(&client, ns, "both users", TIMEOUT, |doc| {
        doc.users.len() == 2
    })
    .await?;
    let users: Api<SstpUser> = Api::namespaced(client.clone(), ns);

    users
        .patch(
            "alice",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"disabled": true}})),
        )
        .await?;
    users_become(&client, ns, "alice disabled", USER_CHANGE_DEADLINE, |doc| {
        !doc.users.contains_key("alice")
    })
    .await?;

    users
        .patch(
            "alice",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"disabled": false}})),
        )
        .await?;
    users_become(&client, ns, "alice enabled", TIMEOUT, |doc| {
        doc.users.contains_key("alice")
    })
    .await?;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    secrets
        .patch(
            "alice-password",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"password": "a new one"}})),
        )
        .await?;
    let wanted = nt_hash_hex("a new one");
    users_become(
        &client,
        ns,
        "alice's new hash",
        USER_CHANGE_DEADLINE,
        |doc| {
            doc.users
                .get("alice")
                .is_some_and(|u| u.nt_hash.0 == wanted)
        },
    )
    .await?;

    users.delete("bob", &DeleteParams::default()).await?;
    users_become(&client, ns, "bob deleted", USER_CHANGE_DEADLINE, |doc| {
        !doc.users.contains_key("Bob")
    })
    .await?;
    operator.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_gateway_removes_its_children() -> Result<(), Error> {
    let (client, namespace) = setup("gc").await?;
    let ns = namespace.name();
    let operator = Operator::start(&client, ns, "op-a");
    gateway_and_two_users(&client, ns).await?;
    users_become(&client, ns, "both users", TIMEOUT, |doc| {
        doc.users.len() == 2
    })
    .await?;
    Api::<SstpGateway>::namespaced(client.clone(), ns)
        .delete("gw", &DeleteParams::background())
        .await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    eventually("children to be garbage-collected", TIMEOUT, || {
        let secrets = secrets.clone();
        let deployments = deployments.clone();
        async move {
            let gone = secrets.get_opt("gw-users").await?.is_none()
                && secrets.get_opt("gw-tls").await?.is_none()
                && secrets.get_opt("gw-ca").await?.is_none()
                && deployments.get_opt("gw").await?.is_none();
            Ok(gone.then_some(()))
        }
    })
    .await?;
    assert!(
        secrets.get_opt("alice-password").await?.is_some(),
        "the user's own Secret stays"
    );
    operator.stop().await;
    Ok(())
}

/// resourceVersion of every object in the namespace the operator writes.
async fn versions(client: &Client, ns: &str) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    let lp = ListParams::default();
    let mut put = |kind: &str, name: String, rv: Option<String>| {
        // kube-root-ca.crt is the controller-manager's, published into every namespace lazily.
        if name != "kube-root-ca.crt" {
            out.insert(format!("{kind}/{name}"), rv.unwrap_or_default());
        }
    };
    for o in Api::<Secret>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        put("Secret", o.name_any(), o.resource_version());
    }
    for o in Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        // The controller-manager writes Deployment status on its own; compare our spec's generation.
        put(
            "Deployment",
            o.name_any(),
            o.metadata.generation.map(|g| g.to_string()),
        );
    }
    for o in Api::<Service>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        put("Service", o.name_any(), o.resource_version());
    }
    for o in Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        put("ConfigMap", o.name_any(), o.resource_version());
    }
    for o in Api::<Role>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        put("Role", o.name_any(), o.resource_version());
    }
    for o in Api::<SstpGateway>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        put("SstpGateway", o.name_any(), o.resource_version());
    }
    for o in Api::<SstpUser>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        put("SstpUser", o.name_any(), o.resource_version());
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_operator_makes_no_writes_when_nothing_changed() -> Result<(), Error> {
    let (client, namespace) = setup("restart").await?;
    let ns = namespace.name();
    let first = Operator::start(&client, ns, "op-a");
    gateway_and_two_users(&client, ns).await?;
    users_become(&client, ns, "both users", TIMEOUT, |doc| {
        doc.users.len() == 2
    })
    .await?;
    // Settled: the gateway status counts both users and has seen the controller-manager finish
    // the rollout (a Deployment status change after the first operator stops would be a real
    // change the second one must write).
    let gateways: Api<SstpGateway> = Api::namespaced(client.clone(), ns);
    let users: Api<SstpUser> = Api::namespaced(client.clone(), ns);
    eventually("a settled gateway and users", TIMEOUT, || {
        let gateways = gateways.clone();
        let users = users.clone();
        async move {
            let status = gateways.get("gw").await?.status.unwrap_or_default();
            let rolled_out = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Progressing" && c.status == "False");
            let mut named = true;
            for user in users.list(&ListParams::default()).await? {
                named &= user.status.unwrap_or_default().gateways == ["gw"];
            }
            Ok((status.users == Some(2) && rolled_out && named).then_some(()))
        }
    })
    .await?;
    first.stop().await;
    let before = versions(&client, ns).await?;

    let second = Operator::start(&client, ns, "op-b");
    let metrics = second.metrics.clone();
    eventually(
        "the new operator to reconcile the gateway and both users",
        TIMEOUT,
        || {
            let metrics = metrics.clone();
            async move {
                Ok(
                    (metrics.reconciles("gateway") >= 1 && metrics.reconciles("user") >= 2)
                        .then_some(()),
                )
            }
        },
    )
    .await?;
    // Let any reconcile the first round triggers finish too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(second.metrics.writes(), 0, "{}", second.metrics.render());
    assert_eq!(versions(&client, ns).await?, before);
    second.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn with_two_operators_only_the_lease_holder_reconciles() -> Result<(), Error> {
    let (client, namespace) = setup("leader").await?;
    let ns = namespace.name();
    let a = Operator::start(&client, ns, "op-a");
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let holder = eventually("a lease holder", TIMEOUT, || {
        let leases = leases.clone();
        async move {
            Ok(leases
                .get_opt("sstp-operator")
                .await?
                .and_then(|l| l.spec)
                .and_then(|s| s.holder_identity))
        }
    })
    .await?;
    assert_eq!(holder, "op-a");
    let b = Operator::start(&client, ns, "op-b");
    gateway_and_two_users(&client, ns).await?;
    users_become(&client, ns, "both users", TIMEOUT, |doc| {
        doc.users.len() == 2
    })
    .await?;
    assert!(a.metrics.reconciles("gateway") >= 1);
    assert_eq!(
        b.metrics.reconciles("gateway") + b.metrics.reconciles("user"),
        0
    );

    // The leader steps down; the standby takes over and serves the next change.
    a.stop().await;
    Api::<SstpUser>::namespaced(client.clone(), ns)
        .patch(
            "alice",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"disabled": true}})),
        )
        .await?;
    users_become(&client, ns, "the standby to take over", TIMEOUT, |doc| {
        !doc.users.contains_key("alice")
    })
    .await?;
    assert!(b.metrics.reconciles("gateway") >= 1);
    b.stop().await;
    Ok(())
}
