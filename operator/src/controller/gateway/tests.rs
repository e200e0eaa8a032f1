//! The gateway reconcile against a scripted API server (`controller::scripted_api`), no cluster:
//! every request of a reconcile, in order, for a new gateway, an unchanged one and a changed
//! password. The same reconcile against a real kube-apiserver and node is in
//! `tests/tests/operator_gateway.rs` and `operator_end_to_end.rs`.

use std::{collections::BTreeMap, sync::Arc};

use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    api::ObjectMeta,
    runtime::{reflector::store::Writer, watcher},
};
use serde_json::{Value, json};
use sstp_api::{SstpGateway, SstpGatewayStatus, SstpUser, UsersDocument};

use super::reconcile;
use crate::{
    controller::{
        Context,
        cache::{self, Cached, Caches, Writers},
        scripted_api::{ApiServer, Call, NS, context, password_secret},
    },
    resources::fixtures,
};

/// What a kube-apiserver holds for the scenario, by path, answering the requests a gateway
/// reconcile makes: GET of one object, server-side apply, the status apply, the pods list and
/// events.
#[derive(Default)]
struct Cluster {
    objects: BTreeMap<String, Value>,
    events: Vec<Value>,
    resource_version: u64,
}

impl Cluster {
    fn answer(&mut self, call: Call) {
        let path = call.path().to_owned();
        match call.method {
            Method::GET if path == format!("/api/v1/namespaces/{NS}/pods") => {
                let pods = json!({ "apiVersion": "v1", "kind": "PodList",
                    "metadata": { "resourceVersion": "1" }, "items": [] });
                call.answer(StatusCode::OK, &pods);
            }
            Method::GET => match self.objects.get(&path) {
                Some(object) => call.answer(StatusCode::OK, object),
                None => call.not_found(),
            },
            Method::PATCH if path.ends_with("/status") => {
                let parent = path.trim_end_matches("/status");
                let object = self
                    .objects
                    .get_mut(parent)
                    .unwrap_or_else(|| panic!("status of {parent}, which is not stored"));
                object["status"] = call.body["status"].clone();
                let object = object.clone();
                call.answer(StatusCode::OK, &object);
            }
            Method::PATCH if path.starts_with(&paths::events()) => {
                // The recorder's update of a repeated event (its series): a merge patch.
                let event = self
                    .objects
                    .get_mut(&path)
                    .unwrap_or_else(|| panic!("a patch of event {path}, which is not stored"));
                for (field, value) in call.body.as_object().unwrap() {
                    event[field] = value.clone();
                }
                self.events.push(event.clone());
                let event = event.clone();
                call.answer(StatusCode::OK, &event);
            }
            Method::PATCH => {
                assert!(
                    call.uri.contains("fieldManager=sstp-operator") && call.uri.contains("force"),
                    "a server-side apply as the operator: {}",
                    call.uri
                );
                self.resource_version += 1;
                let mut object = call.body.clone();
                object["metadata"]["uid"] = json!(format!("uid-{}", self.resource_version));
                object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
                object["metadata"]["generation"] = json!(1);
                self.objects.insert(path, object.clone());
                call.answer(StatusCode::OK, &object);
            }
            Method::POST if path == paths::events() => {
                let name = call.body["metadata"]["name"].as_str().unwrap().to_owned();
                self.objects
                    .insert(format!("{path}/{name}"), call.body.clone());
                self.events.push(call.body.clone());
                call.echo();
            }
            _ => panic!(
                "a request this API server does not serve: {} {}",
                call.method, call.uri
            ),
        }
    }

    /// Every object stored directly under `prefix` (a kind's path ending in `/`).
    fn all<K: serde::de::DeserializeOwned>(&self, prefix: &str) -> Vec<K> {
        self.objects
            .iter()
            .filter(|(path, _)| {
                path.strip_prefix(prefix)
                    .is_some_and(|name| !name.contains('/'))
            })
            .map(|(_, object)| serde_json::from_value(object.clone()).unwrap())
            .collect()
    }

    fn store(&mut self, path: &str, object: &impl serde::Serialize) {
        self.objects
            .insert(path.to_owned(), serde_json::to_value(object).unwrap());
    }

    fn secret(&self, name: &str) -> Secret {
        let path = format!("/api/v1/namespaces/{NS}/secrets/{name}");
        serde_json::from_value(self.objects[&path].clone()).unwrap()
    }

    fn users_document(&self) -> UsersDocument {
        let secret = self.secret("office-users");
        let json = &secret.data.unwrap()["users.json"].0;
        UsersDocument::from_json(std::str::from_utf8(json).unwrap()).unwrap()
    }

    fn gateway_status(&self) -> SstpGatewayStatus {
        let path = format!("/apis/sstp.io/v1alpha1/namespaces/{NS}/sstpgateways/office");
        serde_json::from_value(self.objects[&path]["status"].clone()).unwrap()
    }
}

fn office() -> SstpGateway {
    let mut gateway = fixtures::minimal();
    gateway.metadata.name = Some("office".into());
    gateway.metadata.namespace = Some(NS.into());
    gateway.metadata.uid = Some("uid-office".into());
    gateway
}

fn user(name: &str, password_secret: Option<&str>) -> SstpUser {
    let reference = password_secret.map(|secret| json!({ "name": secret, "key": "password" }));
    let mut user = SstpUser::new(
        name,
        serde_json::from_value(json!({ "username": name, "passwordSecretRef": reference }))
            .unwrap(),
    );
    user.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NS.into()),
        uid: Some(format!("uid-{name}")),
        ..ObjectMeta::default()
    };
    user
}

/// `writer`'s store after a first complete list of `objects`, as a reflector fills it.
fn list_into<K: Cached>(writer: &mut Writer<K>, objects: impl IntoIterator<Item = K>) {
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(object));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
}

/// A cluster with alice (her own password Secret) and bob (the credentials Secret the user
/// reconcile generated), and the operator's context over it, whose SstpUser cache has listed
/// them (the other caches have listed nothing yet: every other read goes to the API server).
fn cluster_with_two_users() -> (Cluster, Arc<Context>, ApiServer, Writers) {
    let mut cluster = Cluster::default();
    let secrets = format!("/api/v1/namespaces/{NS}/secrets");
    cluster.store(
        &format!("{secrets}/alice-password"),
        &password_secret("alice-password", "alice-secret-1"),
    );
    cluster.store(
        &format!("{secrets}/bob-credentials"),
        &password_secret("bob-credentials", "bob-generated"),
    );
    cluster.store(
        &format!("/apis/sstp.io/v1alpha1/namespaces/{NS}/sstpgateways/office"),
        &office(),
    );
    let (caches, mut writers) = Caches::new();
    list_into(
        &mut writers.users,
        [user("bob", None), user("alice", Some("alice-password"))],
    );
    let (ctx, api) = context(Some(caches));
    (cluster, ctx, api, writers)
}

/// Every watch of the gateway controller lists what `cluster` holds.
fn list_everything(cluster: &Cluster, writers: &mut Writers) {
    let secrets = cluster.all::<Secret>(&paths::secret("")).into_iter();
    list_into(
        &mut writers.secrets,
        secrets.map(|mut secret| {
            cache::trimmed_secret(&mut secret);
            secret
        }),
    );
    list_into(&mut writers.pods, []);
    list_into(
        &mut writers.config_maps,
        cluster.all(&paths::core("configmaps", "")),
    );
    list_into(
        &mut writers.service_accounts,
        cluster.all(&paths::core("serviceaccounts", "")),
    );
    let rbac = "rbac.authorization.k8s.io/v1";
    list_into(
        &mut writers.roles,
        cluster.all(&paths::group(rbac, "roles", "")),
    );
    list_into(
        &mut writers.role_bindings,
        cluster.all(&paths::group(rbac, "rolebindings", "")),
    );
    list_into(
        &mut writers.deployments,
        cluster.all(&paths::group("apps/v1", "deployments", "")),
    );
    list_into(
        &mut writers.services,
        cluster.all(&paths::core("services", "")),
    );
    list_into(
        &mut writers.pod_disruption_budgets,
        cluster.all(&paths::group("policy/v1", "poddisruptionbudgets", "")),
    );
}

/// One reconcile of `gateway` against `cluster`: every request it made, in order.
async fn reconciled(
    gateway: SstpGateway,
    cluster: &mut Cluster,
    ctx: &Arc<Context>,
    api: &mut ApiServer,
) -> Vec<String> {
    let running = tokio::spawn(reconcile(Arc::new(gateway), Arc::clone(ctx)));
    let (result, made) = api.serve(running, |call| cluster.answer(call)).await;
    if let Err(err) = result {
        panic!("the reconcile failed: {err}; after {made:#?}");
    }
    made
}

/// A GET and the apply that follows it when the stored hash differs.
fn applied(path: &str) -> [String; 2] {
    [format!("GET {path}"), format!("PATCH {path}")]
}

/// The paths a reconcile of `office` reads, each a child.
mod paths {
    use super::NS;

    pub(super) fn secret(name: &str) -> String {
        format!("/api/v1/namespaces/{NS}/secrets/{name}")
    }
    pub(super) fn core(kind: &str, name: &str) -> String {
        format!("/api/v1/namespaces/{NS}/{kind}/{name}")
    }
    pub(super) fn group(group: &str, kind: &str, name: &str) -> String {
        format!("/apis/{group}/namespaces/{NS}/{kind}/{name}")
    }
    pub(super) fn events() -> String {
        format!("/apis/events.k8s.io/v1/namespaces/{NS}/events")
    }
    pub(super) fn pods() -> String {
        format!("/api/v1/namespaces/{NS}/pods")
    }
}

/// The children of `office`, in the order the reconcile applies them after the users document.
fn workload() -> Vec<String> {
    [
        paths::core("configmaps", "office-config"),
        paths::core("serviceaccounts", "office"),
        paths::group("rbac.authorization.k8s.io/v1", "roles", "office"),
        paths::group("rbac.authorization.k8s.io/v1", "rolebindings", "office"),
        paths::group("apps/v1", "deployments", "office"),
        paths::core("services", "office"),
        paths::group("policy/v1", "poddisruptionbudgets", "office"),
    ]
    .into_iter()
    .collect()
}

/// The unwanted conditional children of a self-managed gateway without monitoring, each
/// looked up so one this gateway controls can be deleted; then the pods, for the status.
fn prune_and_pods() -> Vec<String> {
    vec![
        format!(
            "GET {}",
            paths::group("cert-manager.io/v1", "certificates", "office")
        ),
        format!(
            "GET {}",
            paths::group("monitoring.coreos.com/v1", "servicemonitors", "office")
        ),
        format!("GET {}", paths::core("services", "office-metrics")),
        format!("GET {}", paths::pods()),
    ]
}

#[tokio::test]
async fn a_new_self_managed_gateway_gets_its_ca_certificate_users_document_and_workload_in_one_reconcile()
 {
    let (mut cluster, ctx, mut api, _writers) = cluster_with_two_users();
    let made = reconciled(office(), &mut cluster, &ctx, &mut api).await;

    let mut expected = vec![
        format!("GET {}", paths::secret("office-ca")),
        format!("GET {}", paths::secret("office-tls")),
    ];
    expected.extend(applied(&paths::secret("office-ca")));
    expected.extend(applied(&paths::secret("office-tls")));
    expected.push(format!("POST {}", paths::events()));
    // The users come from the watch cache, by name; each password Secret is read once.
    expected.push(format!("GET {}", paths::secret("alice-password")));
    expected.push(format!("GET {}", paths::secret("bob-credentials")));
    expected.extend(applied(&paths::secret("office-users")));
    expected.push(format!("POST {}", paths::events()));
    expected.extend(workload().iter().flat_map(|path| applied(path)));
    expected.extend(prune_and_pods());
    expected.push(format!(
        "PATCH {}/status",
        paths::group("sstp.io/v1alpha1", "sstpgateways", "office")
    ));
    assert_eq!(made, expected);

    let reasons: Vec<&Value> = cluster.events.iter().map(|e| &e["reason"]).collect();
    assert_eq!(
        reasons,
        [&json!("CertificateIssued"), &json!("UsersUpdated")]
    );
    let document = cluster.users_document();
    assert_eq!(
        document.users.keys().collect::<Vec<_>>(),
        ["alice", "bob"],
        "both users, each under the name the client sends"
    );
    // What the pods mount: the chain and key the built-in CA issued, and its certificate.
    let tls = cluster.secret("office-tls");
    let keys: Vec<&String> = tls.data.as_ref().unwrap().keys().collect();
    assert!(
        ["ca.crt", "tls.crt", "tls.key"]
            .iter()
            .all(|key| keys.iter().any(|k| k == key)),
        "{keys:?}"
    );
    let status = cluster.gateway_status();
    let certificate = status.certificate.as_ref().unwrap();
    assert_eq!(certificate.secret_name, "office-tls");
    assert_eq!(status.users, Some(2));
    // No password, in any form, outside the Secrets.
    let outside_secrets = format!("{:?}{:?}", cluster.events, status);
    let nt_hash = &document.users["alice"].nt_hash.0;
    for secret in ["alice-secret-1", "bob-generated", nt_hash] {
        assert!(!outside_secrets.contains(secret), "{secret} leaked");
    }
    assert_eq!(
        ctx.metrics.writes(),
        11,
        "ca, tls, users, 7 children, status"
    );
}

#[tokio::test]
async fn a_gateway_reconciled_again_with_nothing_changed_only_reads() {
    let (mut cluster, ctx, mut api, _writers) = cluster_with_two_users();
    reconciled(office(), &mut cluster, &ctx, &mut api).await;
    let writes = ctx.metrics.writes();

    // The gateway as the watch sees it next: with the status the first reconcile applied.
    let mut seen = office();
    seen.status = Some(cluster.gateway_status());
    let made = reconciled(seen, &mut cluster, &ctx, &mut api).await;

    let mut expected = vec![
        format!("GET {}", paths::secret("office-ca")),
        format!("GET {}", paths::secret("office-tls")),
        format!("GET {}", paths::secret("office-ca")),
        format!("GET {}", paths::secret("office-tls")),
        format!("GET {}", paths::secret("alice-password")),
        format!("GET {}", paths::secret("bob-credentials")),
        format!("GET {}", paths::secret("office-users")),
    ];
    expected.extend(workload().iter().map(|path| format!("GET {path}")));
    expected.extend(prune_and_pods());
    assert_eq!(made, expected, "reads only: no apply, no event, no status");
    assert_eq!(ctx.metrics.writes(), writes);
    assert_eq!(cluster.events.len(), 2, "the first reconcile's two");
}

#[tokio::test]
async fn a_changed_password_rewrites_the_users_document_alone_and_says_so_in_an_event() {
    let (mut cluster, ctx, mut api, _writers) = cluster_with_two_users();
    reconciled(office(), &mut cluster, &ctx, &mut api).await;
    let before = cluster.users_document();
    let config = cluster.objects[&paths::core("configmaps", "office-config")].clone();
    cluster.store(
        &paths::secret("alice-password"),
        &password_secret("alice-password", "alice-secret-2"),
    );

    let mut seen = office();
    seen.status = Some(cluster.gateway_status());
    let made = reconciled(seen, &mut cluster, &ctx, &mut api).await;

    let writes: Vec<&String> = made.iter().filter(|m| !m.starts_with("GET ")).collect();
    assert_eq!(writes.len(), 2, "{writes:#?}");
    assert_eq!(
        writes[0],
        &format!("PATCH {}", paths::secret("office-users"))
    );
    // The same note as the first reconcile's: the recorder counts it on in that event's series.
    assert!(
        writes[1].starts_with(&format!("PATCH {}/office.", paths::events())),
        "{}",
        writes[1]
    );
    assert_eq!(cluster.events.last().unwrap()["reason"], "UsersUpdated");
    let after = cluster.users_document();
    assert_ne!(after.users["alice"], before.users["alice"]);
    assert_eq!(after.users["bob"], before.users["bob"]);
    // The pods pick the document up from the Secret they watch: no configuration change, so
    // no rollout.
    assert_eq!(
        cluster.objects[&paths::core("configmaps", "office-config")],
        config
    );
}

#[tokio::test]
async fn once_the_watches_have_listed_a_reconcile_reads_only_what_the_cache_must_not_answer() {
    let (mut cluster, ctx, mut api, mut writers) = cluster_with_two_users();
    reconciled(office(), &mut cluster, &ctx, &mut api).await;
    list_everything(&cluster, &mut writers);
    let mut seen = office();
    seen.status = Some(cluster.gateway_status());

    let made = reconciled(seen.clone(), &mut cluster, &ctx, &mut api).await;
    // The CA and the certificate from the API server (a lagging cache must never make the
    // reconcile issue a second CA); the absent conditional children are looked up.
    let mut expected = vec![
        format!("GET {}", paths::secret("office-ca")),
        format!("GET {}", paths::secret("office-tls")),
    ];
    expected.extend(prune_and_pods());
    expected.pop(); // the pods: from their cache
    assert_eq!(
        made, expected,
        "children, passwords and pods from the caches"
    );

    // Alice's new password, as the Secret watch delivers it: read from the cache, and the users
    // document the cache holds is older than what is to be applied, so it is read, then written.
    let changed = password_secret("alice-password", "alice-secret-2");
    cluster.store(&paths::secret("alice-password"), &changed);
    writers
        .secrets
        .apply_watcher_event(&watcher::Event::Apply(changed));
    let before = cluster.users_document();
    let made = reconciled(seen, &mut cluster, &ctx, &mut api).await;
    assert!(
        !made.contains(&format!("GET {}", paths::secret("alice-password"))),
        "{made:#?}"
    );
    let users = paths::secret("office-users");
    assert_eq!(
        made[..4],
        [
            format!("GET {}", paths::secret("office-ca")),
            format!("GET {}", paths::secret("office-tls")),
            format!("GET {users}"),
            format!("PATCH {users}"),
        ]
    );
    assert!(
        made[4].starts_with(&format!("PATCH {}/office.", paths::events())),
        "the UsersUpdated event's series: {made:#?}"
    );
    assert_eq!(
        made[5..],
        expected[2..],
        "then the prune lookups, as before"
    );
    assert_ne!(cluster.users_document(), before);
}

#[tokio::test]
async fn an_api_error_ends_the_reconcile_where_it_happened_and_names_its_kind_for_the_metric() {
    let (mut cluster, ctx, mut api, _writers) = cluster_with_two_users();
    let deployment = paths::group("apps/v1", "deployments", "office");
    let running = tokio::spawn(reconcile(Arc::new(office()), Arc::clone(&ctx)));
    let (result, made) = api
        .serve(running, |call| {
            if call.method == Method::PATCH && call.path() == deployment {
                let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "InternalError", "code": 500, "message": "etcd is down"});
                call.answer(StatusCode::INTERNAL_SERVER_ERROR, &status);
            } else {
                cluster.answer(call);
            }
        })
        .await;
    let err = result.unwrap_err();
    assert_eq!(err.metric_label(), "kube", "{err}");
    assert!(format!("{err:?}").contains("etcd is down"), "{err:?}");
    // Nothing after the failed write: no Service, no status claiming anything.
    assert_eq!(
        made.last(),
        Some(&format!("PATCH {deployment}")),
        "{made:#?}"
    );
    assert_eq!(
        ctx.metrics.writes(),
        7,
        "ca, tls, users and four children before it"
    );
}
