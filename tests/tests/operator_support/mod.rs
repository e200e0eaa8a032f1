//! Shared by the operator tests: CRD installation, an in-process operator scoped to the test's
//! namespace, and a stand-in kubelet that marks pods ready (the test control plane has no nodes).

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use k8s_openapi::{
    api::core::v1::{Pod, Secret},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, ListParams, Patch, PatchParams, PostParams},
};
use sstp_api::{SstpGateway, SstpGatewayStatus};
use sstp_e2e::{ControlPlane, Error, TestNamespace, eventually};
use sstp_operator::{Settings, leader::LeaseSettings, metrics::Metrics};
use tokio::{sync::oneshot, task::JoinHandle};

/// Bounds a broken run; healthy steps take a second or two.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The shared control plane with the CRDs installed, an admin client and a fresh namespace.
pub async fn setup(label: &str) -> Result<(Client, TestNamespace), Error> {
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.client().await?;
    install_crds(&client).await?;
    let namespace = TestNamespace::create(control_plane, &client, label).await?;
    Ok((client, namespace))
}

/// Applies the CRDs (idempotent) and waits until the apiserver serves them.
pub async fn install_crds(client: &Client) -> Result<(), Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in sstp_api::crds() {
        let name = crd.name_any();
        crds.patch(
            &name,
            &PatchParams::apply("sstp-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await?;
        established(&crds, &name).await?;
    }
    Ok(())
}

/// Waits until the CRD `name` is established (served).
pub async fn established(crds: &Api<CustomResourceDefinition>, name: &str) -> Result<(), Error> {
    eventually(&format!("CRD {name} to be established"), TIMEOUT, || {
        let crds = crds.clone();
        async move {
            let crd = crds.get(name).await?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            Ok(established.then_some(()))
        }
    })
    .await
}

/// A schema-less stand-in for a foreign CRD (cert-manager's `Certificate`, prometheus-operator's
/// `ServiceMonitor`), enough for the operator to find and use the kind. Created if missing (never
/// deleted: parallel tests of one binary may share it); returns once it is served.
pub async fn stand_in_crd(client: &Client, resource: &ApiResource) -> Result<(), Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = format!("{}.{}", resource.plural, resource.group);
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "group": resource.group, "scope": "Namespaced",
            "names": {"plural": resource.plural, "singular": resource.kind.to_lowercase(),
                      "kind": resource.kind},
            "versions": [{"name": resource.version, "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                                               "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }))
    .expect("valid CRD");
    match crds.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_already_exists() => {}
        Err(err) => return Err(err.into()),
    }
    established(&crds, &name).await
}

/// Waits until the status of gateway `gw` satisfies `check` and returns it.
pub async fn status_until(
    client: &Client,
    ns: &str,
    what: &str,
    check: impl Fn(&SstpGatewayStatus) -> bool,
) -> Result<SstpGatewayStatus, Error> {
    let api: Api<SstpGateway> = Api::namespaced(client.clone(), ns);
    eventually(what, TIMEOUT, || {
        let api = api.clone();
        let check = &check;
        async move {
            let status = api.get("gw").await?.status.unwrap_or_default();
            Ok(check(&status).then_some(status))
        }
    })
    .await
}

/// An operator running in this process, watching one namespace.
pub struct Operator {
    pub metrics: Metrics,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), sstp_operator::RunError>>>,
}

impl Operator {
    /// Starts an operator with `identity`, its Lease in `namespace`.
    pub fn start(client: &Client, namespace: &str, identity: &str) -> Self {
        let metrics = Metrics::new();
        let (stop, stopped) = oneshot::channel::<()>();
        let settings = Settings {
            gateway_image: "example.invalid/sstp-gateway:test".to_owned(),
            gateway_pull_policy: None,
            lease: LeaseSettings {
                name: "sstp-operator".to_owned(),
                namespace: namespace.to_owned(),
                identity: identity.to_owned(),
                duration_seconds: 15,
                grace_seconds: 5,
            },
            admin_address: None,
            watch_namespaces: vec![namespace.to_owned()],
        };
        let task = tokio::spawn(sstp_operator::run(
            client.clone(),
            settings,
            metrics.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            metrics,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops it gracefully (releasing the Lease) and waits.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(TIMEOUT, task).await;
            assert!(
                matches!(result, Ok(Ok(Ok(())))),
                "operator did not stop cleanly: {result:?}"
            );
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Plays kubelet: marks every pod of the namespace Running and Ready.
pub async fn mark_pods_ready(client: &Client, namespace: &str) -> Result<usize, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods.list(&ListParams::default()).await?;
    let now = jiff::Timestamp::now().to_string();
    for pod in &list.items {
        let patch = serde_json::json!({
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}
                ]
            }
        });
        pods.patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    Ok(list.items.len())
}

/// Creates a Secret with one key.
pub async fn password_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    password: &str,
) -> Result<(), Error> {
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "stringData": {"password": password}
    }))
    .expect("valid Secret");
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(())
}

/// Creates any namespaced object from JSON.
pub async fn create<K>(
    client: &Client,
    namespace: &str,
    object: serde_json::Value,
) -> Result<K, Error>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
{
    let object: K = serde_json::from_value(object).expect("valid object");
    Ok(Api::<K>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &object)
        .await?)
}

/// The users document in `<gw>-users`, parsed.
pub async fn users_document(
    client: &Client,
    namespace: &str,
    gateway: &str,
) -> Result<Option<sstp_api::UsersDocument>, Error> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(&format!("{gateway}-users"))
        .await?;
    Ok(secret
        .and_then(|s| s.data)
        .and_then(|d| d.get("users.json").cloned())
        .and_then(|v| String::from_utf8(v.0).ok())
        .and_then(|text| sstp_api::UsersDocument::from_json(&text).ok()))
}

/// The NT hash hex of a password.
pub fn nt_hash_hex(password: &str) -> String {
    sstp_ppp::NtHash::from_password(password)
        .0
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
