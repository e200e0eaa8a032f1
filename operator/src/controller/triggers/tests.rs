//! Which gateways a Secret wakes, one row per kind of Secret.

use std::sync::Arc;

use k8s_openapi::{
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use sstp_api::{SstpGateway, SstpUser, SstpUserSpec};

use super::gateways_for_secret;
use crate::resources::fixtures;

fn gateway(name: &str, namespace: &str, extra: serde_json::Value) -> Arc<SstpGateway> {
    let mut spec = serde_json::json!({
        "hostnames": ["vpn.example.com"],
        "addressPool": "10.8.0.0/24"
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    let mut gateway = fixtures::gateway(spec);
    gateway.metadata.name = Some(name.into());
    gateway.metadata.namespace = Some(namespace.into());
    Arc::new(gateway)
}

fn user(name: &str, namespace: &str, team: &str, password: Option<&str>) -> Arc<SstpUser> {
    let spec = match password {
        Some(secret) => serde_json::json!({"passwordSecretRef": {"name": secret}}),
        None => serde_json::json!({}),
    };
    Arc::new(SstpUser {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some([("team".to_owned(), team.to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: serde_json::from_value::<SstpUserSpec>(spec).unwrap(),
        status: None,
    })
}

fn secret(name: &str, namespace: &str, owner: Option<&str>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            owner_references: owner.map(|kind| {
                vec![OwnerReference {
                    api_version: "sstp.io/v1alpha1".into(),
                    kind: kind.into(),
                    name: "owner".into(),
                    controller: Some(true),
                    ..OwnerReference::default()
                }]
            }),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    }
}

#[test]
fn a_secret_wakes_only_the_gateways_it_concerns() {
    let team = |t: &str| serde_json::json!({"users": {"selector": {"matchLabels": {"team": t}}}});
    let gateways = [
        gateway("red", "ns", team("red")),
        gateway("blue", "ns", team("blue")),
        gateway("everyone", "ns", serde_json::json!({})),
        gateway(
            "byo",
            "ns",
            serde_json::json!({"tls": {"secretName": "byo-cert"}}),
        ),
        gateway(
            "acme",
            "ns",
            serde_json::json!({"tls": {"certManager": {"issuerRef": {"name": "le"}}}}),
        ),
        gateway("elsewhere", "other", serde_json::json!({})),
    ];
    let users = [
        user("alice", "ns", "red", Some("alice-pw")),
        user("bob", "ns", "blue", Some("shared-pw")),
        user("carol", "ns", "red", Some("shared-pw")),
        // Her default password Secret is named after her.
        user("dave", "other", "red", None),
    ];
    let everyone_but = |skip: &[&str]| -> Vec<String> {
        ["red", "blue", "everyone", "byo", "acme"]
            .into_iter()
            .filter(|gw| !skip.contains(gw))
            .map(str::to_owned)
            .collect()
    };
    let rows: [(&str, Secret, Vec<String>); 10] = [
        (
            "a password of a red user: the red gateway and every gateway selecting all users",
            secret("alice-pw", "ns", None),
            vec!["red".into(), "everyone".into(), "byo".into(), "acme".into()],
        ),
        (
            "a password two teams' users share",
            secret("shared-pw", "ns", None),
            everyone_but(&[]),
        ),
        (
            "a bring-your-own certificate",
            secret("byo-cert", "ns", None),
            vec!["byo".into()],
        ),
        (
            "the certificate cert-manager writes",
            secret("acme-tls", "ns", None),
            vec!["acme".into()],
        ),
        (
            "<gw>-tls of a self-managed gateway is its own, not cert-manager's",
            secret("red-tls", "ns", None),
            vec![],
        ),
        (
            "a Secret nobody names (a Helm release, a token)",
            secret("sh.helm.release.v1.x.v2", "ns", None),
            vec![],
        ),
        (
            "a Secret a gateway controls wakes that gateway alone",
            secret("byo-cert", "ns", Some("SstpGateway")),
            vec!["owner".into()],
        ),
        (
            "a generated password Secret, which its SstpUser controls, wakes as a password",
            secret("alice-pw", "ns", Some("SstpUser")),
            vec!["red".into(), "everyone".into(), "byo".into(), "acme".into()],
        ),
        (
            "the same name in another namespace",
            secret("alice-pw", "other", None),
            vec![],
        ),
        (
            "a default password Secret, named after its user",
            secret("dave-credentials", "other", None),
            vec!["elsewhere".into()],
        ),
    ];
    for (what, secret, want) in rows {
        let got: Vec<String> = gateways_for_secret(&secret, &gateways, &users)
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(got, want, "{what}");
    }
}
