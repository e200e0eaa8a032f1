//! The user reconcile against a scripted API server (`controller::scripted_api`), no cluster:
//! each scenario says exactly what the reconcile reads and writes. The same reconcile against a
//! real kube-apiserver is in `tests/tests/operator_gateway.rs`.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use http::{Method, StatusCode};
use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::LabelSelector};
use kube::{api::ObjectMeta, runtime::controller::Action};
use serde_json::{Value, json};
use sstp_api::{SstpGateway, SstpUser, SstpUserSpec, user::PasswordSecretRef};

use super::{RESYNC, generate_password, reconcile};
use crate::controller::scripted_api::{
    ApiServer, Call, NS, context, finished, json_of, password_secret,
};

fn user(name: &str, spec: SstpUserSpec) -> SstpUser {
    let mut user = SstpUser::new(name, spec);
    user.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NS.into()),
        uid: Some(format!("uid-{name}")),
        generation: Some(1),
        labels: Some(BTreeMap::from([("team".into(), "ops".into())])),
        ..ObjectMeta::default()
    };
    user
}

fn spec(username: &str) -> SstpUserSpec {
    serde_json::from_value(json!({ "username": username })).unwrap()
}

/// A gateway in the namespace, selecting users with `team=<team>` (all when `None`).
fn gateway(name: &str, team: Option<&str>) -> Value {
    let users = team.map_or(json!({}), |team| {
        json!({ "selector": LabelSelector {
            match_labels: Some(BTreeMap::from([("team".into(), team.into())])),
            ..LabelSelector::default()
        }})
    });
    let gateway: SstpGateway = serde_json::from_value(json!({
        "apiVersion": "sstp.io/v1alpha1", "kind": "SstpGateway",
        "metadata": { "name": name, "namespace": NS },
        "spec": { "hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24", "users": users },
    }))
    .unwrap();
    serde_json::to_value(gateway).unwrap()
}

fn list(items: &[Value]) -> Value {
    json!({ "apiVersion": "sstp.io/v1alpha1", "kind": "SstpGatewayList",
        "metadata": { "resourceVersion": "1" }, "items": items })
}

/// The Ready condition of a status written by an apply.
fn ready(status_patch: &Value) -> (&str, &str) {
    let condition = status_patch["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    (
        condition["status"].as_str().unwrap(),
        condition["reason"].as_str().unwrap(),
    )
}

/// Alice, who names no password, reconciling: her credentials Secret is not there yet, and the
/// reconcile's create of it is the request waiting for an answer.
async fn alice_creating_her_credentials() -> (
    Arc<SstpUser>,
    tokio::task::JoinHandle<crate::Result<Action>>,
    ApiServer,
    Call,
) {
    let (ctx, mut api) = context(None);
    let alice = Arc::new(user("alice", spec("alice")));
    let reconciled = tokio::spawn(reconcile(Arc::clone(&alice), ctx));
    api.expect(
        Method::GET,
        "/api/v1/namespaces/vpn/secrets/alice-credentials",
    )
    .await
    .not_found();
    let create = api
        .expect(Method::POST, "/api/v1/namespaces/vpn/secrets?")
        .await;
    (alice, reconciled, api, create)
}

#[test]
fn generated_passwords_are_long_alphanumeric_and_differ() {
    let a = generate_password();
    let b = generate_password();
    assert_eq!(a.len(), 24);
    assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_ne!(a, b);
}

#[tokio::test]
async fn a_user_without_a_password_gets_a_generated_secret_an_event_and_a_ready_status_naming_its_gateways()
 {
    let (alice, reconciled, mut api, create) = alice_creating_her_credentials().await;
    assert!(
        create.uri.contains("fieldManager=sstp-operator"),
        "{}",
        create.uri
    );
    let secret: Secret = serde_json::from_value(create.body.clone()).unwrap();
    assert_eq!(secret.metadata.name.as_deref(), Some("alice-credentials"));
    let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("SstpUser", "uid-alice")
    );
    let password = secret.data.as_ref().unwrap()["password"].0.clone();
    assert_eq!(password.len(), 24);
    let created = create.body.clone();
    create.echo();
    let event = api
        .expect(Method::POST, "/apis/events.k8s.io/v1/namespaces/vpn/events")
        .await;
    assert_eq!(event.body["reason"], "CredentialsGenerated");
    assert!(
        !event
            .body
            .to_string()
            .contains(std::str::from_utf8(&password).unwrap()),
        "the event never carries the password"
    );
    event.echo();
    api.expect(
        Method::GET,
        "/api/v1/namespaces/vpn/secrets/alice-credentials",
    )
    .await
    .answer(StatusCode::OK, &created);
    api.expect(
        Method::GET,
        "/apis/sstp.io/v1alpha1/namespaces/vpn/sstpgateways",
    )
    .await
    .answer(
        StatusCode::OK,
        &list(&[
            gateway("office", Some("ops")),
            gateway("branch", Some("sales")),
            gateway("all", None),
        ]),
    );
    let apply = api
        .expect(
            Method::PATCH,
            "/apis/sstp.io/v1alpha1/namespaces/vpn/sstpusers/alice/status?",
        )
        .await;
    assert!(apply.uri.contains("force=true"), "{}", apply.uri);
    assert_eq!(ready(&apply.body), ("True", "Active"));
    assert_eq!(apply.body["status"]["gateways"], json!(["all", "office"]));
    assert_eq!(
        apply.body["status"]["credentialsSecret"],
        "alice-credentials"
    );
    assert!(
        apply.body["status"].get("activeSessions").is_none(),
        "the census' field"
    );
    assert!(
        !apply
            .body
            .to_string()
            .contains(std::str::from_utf8(&password).unwrap())
    );
    apply.applied_to(&*alice);

    assert_eq!(finished(reconciled).await, Action::requeue(RESYNC));
    api.expect_no_more().await;
}

#[tokio::test]
async fn a_generated_secret_someone_else_created_meanwhile_stands_and_no_event_says_otherwise() {
    let (alice, reconciled, mut api, create) = alice_creating_her_credentials().await;
    create.conflict();
    // No event: the reconcile reads the Secret that won.
    api.expect(
        Method::GET,
        "/api/v1/namespaces/vpn/secrets/alice-credentials",
    )
    .await
    .answer(
        StatusCode::OK,
        &json_of(&password_secret("alice-credentials", "theirs-not-ours")),
    );
    api.expect(
        Method::GET,
        "/apis/sstp.io/v1alpha1/namespaces/vpn/sstpgateways",
    )
    .await
    .answer(StatusCode::OK, &list(&[]));
    let apply = api
        .expect(
            Method::PATCH,
            "/apis/sstp.io/v1alpha1/namespaces/vpn/sstpusers/alice/status?",
        )
        .await;
    assert_eq!(ready(&apply.body), ("True", "Active"));
    apply.applied_to(&*alice);
    finished(reconciled).await;
    api.expect_no_more().await;
}

#[tokio::test]
async fn a_disabled_user_is_not_ready_lists_no_gateway_and_a_second_reconcile_writes_nothing() {
    let mut disabled = spec("bob");
    disabled.disabled = true;
    disabled.password_secret_ref = Some(PasswordSecretRef {
        name: "bob-password".into(),
        key: "password".into(),
    });
    let (ctx, mut api) = context(None);
    let bob = user("bob", disabled);
    let reconciled = tokio::spawn(reconcile(Arc::new(bob.clone()), Arc::clone(&ctx)));
    api.expect(Method::GET, "/api/v1/namespaces/vpn/secrets/bob-password")
        .await
        .answer(
            StatusCode::OK,
            &json_of(&password_secret("bob-password", "bob-pass")),
        );
    let apply = api
        .expect(
            Method::PATCH,
            "/apis/sstp.io/v1alpha1/namespaces/vpn/sstpusers/bob/status?",
        )
        .await;
    assert_eq!(ready(&apply.body), ("False", "Disabled"));
    let gateways = &apply.body["status"]["gateways"];
    assert!(gateways.as_array().is_none_or(Vec::is_empty), "{gateways}");
    assert!(apply.body["status"].get("credentialsSecret").is_none());
    let written = apply.body["status"].clone();
    apply.applied_to(&bob);
    finished(reconciled).await;

    // The user as the watch sees it next: with that status. Nothing changed, nothing is written.
    let mut seen = bob;
    seen.status = Some(serde_json::from_value(written).unwrap());
    let reconciled = tokio::spawn(reconcile(Arc::new(seen), Arc::clone(&ctx)));
    api.expect(Method::GET, "/api/v1/namespaces/vpn/secrets/bob-password")
        .await
        .answer(
            StatusCode::OK,
            &json_of(&password_secret("bob-password", "bob-pass")),
        );
    finished(reconciled).await;
    drop(ctx);
    api.expect_no_more().await;
}

#[tokio::test]
async fn a_missing_password_says_which_secret_and_key_and_an_expiry_brings_the_next_reconcile_forward()
 {
    let mut expiring = spec("carol");
    expiring.password_secret_ref = Some(PasswordSecretRef {
        name: "carol-password".into(),
        key: "pw".into(),
    });
    let in_five_minutes = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(5);
    expiring.expires_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        in_five_minutes,
    ));
    let (ctx, mut api) = context(None);
    let carol = user("carol", expiring);
    let reconciled = tokio::spawn(reconcile(Arc::new(carol.clone()), ctx));
    api.expect(Method::GET, "/api/v1/namespaces/vpn/secrets/carol-password")
        .await
        .not_found();
    let apply = api
        .expect(
            Method::PATCH,
            "/apis/sstp.io/v1alpha1/namespaces/vpn/sstpusers/carol/status?",
        )
        .await;
    assert_eq!(ready(&apply.body), ("False", "PasswordMissing"));
    let message = apply.body["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("carol-password") && message.contains("pw"),
        "{message}"
    );
    apply.applied_to(&carol);
    let action = finished(reconciled).await;
    // Five minutes to the expiry, sooner than the resync: the reconcile comes back then (to
    // within the seconds this test took).
    let at_expiry = (295..=300).map(|s| Action::requeue(Duration::from_secs(s)));
    assert!(at_expiry.clone().any(|a| a == action), "{action:?}");
    api.expect_no_more().await;
}
