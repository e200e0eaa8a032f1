//! Smoke tests of the real control plane: it starts, stores objects, runs its controllers (Deployment
//! to ReplicaSet, garbage collection) and its helm and kubectl work.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Resource, ResourceExt};
use sstp_e2e::{ControlPlane, Error, TestNamespace, eventually};

/// Controllers act within a second or two here; this only bounds a broken run.
const CONTROLLER_TIMEOUT: Duration = Duration::from_secs(60);

fn labels(app: &str) -> BTreeMap<String, String> {
    [("app".to_owned(), app.to_owned())].into()
}

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..ConfigMap::default()
    }
}

fn deployment(name: &str) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(labels(name)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(name)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "main".to_owned(),
                        image: Some("registry.invalid/never-pulled:1".to_owned()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

#[tokio::test]
async fn the_control_plane_starts_and_serves_the_api() -> Result<(), Error> {
    let control_plane = ControlPlane::shared()?;
    if let Some(startup) = control_plane.startup_time() {
        // Printed, not asserted: the readiness timeout in the harness is the only bound.
        println!(
            "control plane became ready in {:.1}s",
            startup.as_secs_f64()
        );
    }
    let client = control_plane.client().await?;
    let version = client.apiserver_version().await?;
    assert_eq!(version.major, "1");
    let namespaces = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await?;
    assert!(
        namespaces
            .items
            .iter()
            .any(|ns| ns.name_any() == "kube-system")
    );
    Ok(())
}

#[tokio::test]
async fn a_namespace_a_config_map_and_a_deployment_can_be_created() -> Result<(), Error> {
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.client().await?;
    let namespace = TestNamespace::create(control_plane, &client, "create").await?;

    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), namespace.name());
    config_maps
        .create(
            &PostParams::default(),
            &config_map("settings", &[("mode", "test")]),
        )
        .await?;
    let stored = config_maps.get("settings").await?;
    assert_eq!(
        stored
            .data
            .as_ref()
            .and_then(|data| data.get("mode"))
            .map(String::as_str),
        Some("test")
    );

    let deployments = Api::<Deployment>::namespaced(client, namespace.name());
    deployments
        .create(&PostParams::default(), &deployment("web"))
        .await?;
    let stored = deployments.get("web").await?;
    assert_eq!(stored.spec.and_then(|spec| spec.replicas), Some(1));
    Ok(())
}

#[tokio::test]
async fn a_deployment_gets_a_replica_set_from_the_controller_manager() -> Result<(), Error> {
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.client().await?;
    let namespace = TestNamespace::create(control_plane, &client, "replicaset").await?;

    let created = Api::<Deployment>::namespaced(client.clone(), namespace.name())
        .create(&PostParams::default(), &deployment("web"))
        .await?;
    let replica_sets = Api::<ReplicaSet>::namespaced(client, namespace.name());
    let owned = eventually(
        "a ReplicaSet owned by the Deployment",
        CONTROLLER_TIMEOUT,
        || {
            let replica_sets = replica_sets.clone();
            let owner = created.uid();
            async move {
                let list = replica_sets.list(&ListParams::default()).await?;
                Ok(list.items.into_iter().find(|rs| {
                    rs.owner_references()
                        .iter()
                        .any(|o| Some(&o.uid) == owner.as_ref())
                }))
            }
        },
    )
    .await?;
    assert_eq!(owned.spec.and_then(|spec| spec.replicas), Some(1));
    Ok(())
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_dependents() -> Result<(), Error> {
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.client().await?;
    let namespace = TestNamespace::create(control_plane, &client, "gc").await?;
    let config_maps = Api::<ConfigMap>::namespaced(client, namespace.name());

    let owner = config_maps
        .create(&PostParams::default(), &config_map("owner", &[]))
        .await?;
    let mut dependent = config_map("dependent", &[]);
    dependent.metadata.owner_references = Some(vec![OwnerReference {
        api_version: ConfigMap::api_version(&()).into_owned(),
        kind: ConfigMap::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.uid().unwrap_or_default(),
        ..OwnerReference::default()
    }]);
    config_maps
        .create(&PostParams::default(), &dependent)
        .await?;
    let bystander = config_maps
        .create(&PostParams::default(), &config_map("bystander", &[]))
        .await?;

    config_maps
        .delete("owner", &DeleteParams::background())
        .await?;
    eventually(
        "the dependent to be garbage-collected",
        CONTROLLER_TIMEOUT,
        || {
            let config_maps = config_maps.clone();
            async move {
                Ok(config_maps
                    .get_opt("dependent")
                    .await?
                    .is_none()
                    .then_some(()))
            }
        },
    )
    .await?;
    let still_there = config_maps.get("bystander").await?;
    assert_eq!(still_there.uid(), bystander.uid());
    Ok(())
}

#[tokio::test]
async fn dropping_a_test_namespace_deletes_it() -> Result<(), Error> {
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.client().await?;
    let namespace = TestNamespace::create(control_plane, &client, "dropped").await?;
    let name = namespace.name().to_owned();
    drop(namespace);

    let namespaces = Api::<Namespace>::all(client);
    // Gone, or on its way out (the namespace controller empties it first).
    let found = namespaces.get_opt(&name).await?;
    let deleting = found.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some());
    assert!(deleting, "namespace {name} was not deleted");
    Ok(())
}

#[test]
fn helm_and_kubectl_from_the_build_run() -> Result<(), Error> {
    let control_plane = ControlPlane::shared()?;

    let helm = control_plane
        .command("helm")
        .args(["version", "--short"])
        .output()
        .map_err(|source| Error::Io {
            what: "running helm".to_owned(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&helm.stdout);
    assert!(helm.status.success(), "helm version failed: {helm:?}");
    assert!(
        stdout.starts_with("v3."),
        "unexpected helm version {stdout:?}"
    );

    let kubectl = control_plane
        .command("kubectl")
        .args(["get", "namespace", "default", "-o", "name"])
        .output()
        .map_err(|source| Error::Io {
            what: "running kubectl".to_owned(),
            source,
        })?;
    assert!(kubectl.status.success(), "kubectl failed: {kubectl:?}");
    assert_eq!(
        String::from_utf8_lossy(&kubectl.stdout).trim(),
        "namespace/default"
    );
    Ok(())
}

#[tokio::test]
async fn helm_installs_a_chart_into_a_test_namespace() -> Result<(), Error> {
    let control_plane = ControlPlane::shared()?;
    let client = control_plane.client().await?;
    let namespace = TestNamespace::create(control_plane, &client, "helm").await?;

    let chart = std::env::temp_dir().join(format!("sstp-e2e-chart-{}", namespace.name()));
    let written = write_chart(&chart);
    let install = written.and_then(|()| {
        control_plane
            .command("helm")
            .args(["install", "smoke"])
            .arg(&chart)
            .args(["--namespace", namespace.name()])
            .output()
    });
    let _ = std::fs::remove_dir_all(&chart);
    let install = install.map_err(|source| Error::Io {
        what: "running helm".to_owned(),
        source,
    })?;
    assert!(install.status.success(), "helm install failed: {install:?}");

    let installed = Api::<ConfigMap>::namespaced(client, namespace.name())
        .get("smoke-settings")
        .await?;
    assert_eq!(
        installed
            .labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("Helm")
    );
    Ok(())
}

/// A chart with one ConfigMap, written to `dir`.
fn write_chart(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("templates"))?;
    std::fs::write(
        dir.join("Chart.yaml"),
        "apiVersion: v2\nname: smoke\nversion: 0.1.0\n",
    )?;
    std::fs::write(
        dir.join("templates/configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\n  \
         labels:\n    app.kubernetes.io/managed-by: {{ .Release.Service }}\ndata:\n  mode: test\n",
    )
}
