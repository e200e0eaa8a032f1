//! The gateway's watch of its own Secrets through the real apiserver, under the Role the
//! operator renders (only `<gw>-users` and `<gw>-tls`, by name), as the pod's ServiceAccount.

#![allow(clippy::unwrap_used)]

mod operator_support;

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::{
    core::v1::{Secret, ServiceAccount},
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use sstp_e2e::{ControlPlane, Error, TestNamespace, eventually};
use sstp_gateway::{
    k8s_source::{SecretRef, watch_tls_secret, watch_users_secret},
    metrics::Metrics,
    pki::{CertificateAuthority, KeyAlgorithm, ServerCertRequest},
    tls::{CertFiles, TlsSnapshot, TlsStore},
    users_file::UsersPublisher,
};
use sstp_operator::resources::{Names, Owner, rbac};

use operator_support::{TIMEOUT, nt_hash_hex};

/// The ServiceAccount, Role and RoleBinding the operator gives gateway `gw`, and a client that
/// acts as that ServiceAccount.
async fn gateway_identity(
    control_plane: &ControlPlane,
    admin: &Client,
    ns: &str,
) -> Result<Client, Error> {
    let owner = Owner {
        namespace: ns.to_owned(),
        names: Names::of("gw"),
        // A ConfigMap stands in as the owner; garbage collection is not under test here.
        reference: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "stand-in".into(),
            uid: "00000000-0000-0000-0000-000000000000".into(),
            ..Default::default()
        },
    };
    let strip = |mut meta: kube::core::ObjectMeta| {
        meta.owner_references = None;
        meta
    };
    let pp = PostParams::default();
    let mut sa = rbac::service_account(&owner);
    sa.metadata = strip(sa.metadata);
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create(&pp, &sa)
        .await?;
    let mut role = rbac::role(&owner);
    role.metadata = strip(role.metadata);
    Api::<Role>::namespaced(admin.clone(), ns)
        .create(&pp, &role)
        .await?;
    let mut binding = rbac::role_binding(&owner);
    binding.metadata = strip(binding.metadata);
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(&pp, &binding)
        .await?;

    let kubeconfig = kube::config::Kubeconfig::read_from(control_plane.kubeconfig())
        .map_err(|e| Error::Start(e.to_string()))?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| Error::Start(e.to_string()))?;
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{ns}:gw"));
    config.default_namespace = ns.to_owned();
    Ok(Client::try_from(config)?)
}

fn secret(name: &str, data: &[(&str, &[u8])]) -> Secret {
    Secret {
        metadata: kube::core::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), k8s_openapi::ByteString(v.to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

fn users_json(password: &str) -> String {
    format!(
        r#"{{"version": 1, "users": {{"alice": {{"ntHash": "{}"}}}}}}"#,
        nt_hash_hex(password)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_users_secret_is_followed_live_and_a_bad_document_keeps_the_last_good_one()
-> Result<(), Error> {
    let control_plane = ControlPlane::shared()?;
    let admin = control_plane.client().await?;
    let namespace = TestNamespace::create(control_plane, &admin, "k8s-source-users").await?;
    let ns = namespace.name();
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), ns);
    secrets
        .create(
            &PostParams::default(),
            &secret("gw-users", &[("users.json", users_json("one").as_bytes())]),
        )
        .await?;
    secrets
        .create(&PostParams::default(), &secret("unrelated", &[("x", b"y")]))
        .await?;
    let pod = gateway_identity(control_plane, &admin, ns).await?;

    // The Role really is that narrow: another Secret is forbidden to the gateway.
    match Api::<Secret>::namespaced(pod.clone(), ns)
        .get("unrelated")
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403),
        other => panic!("the gateway could read another Secret: {other:?}"),
    }

    let (publisher, mut users) = UsersPublisher::new(Metrics::new());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let source = SecretRef::new(&pod, None, "gw-users");
    assert_eq!(source.namespace, ns);
    let task = tokio::spawn(watch_users_secret(
        pod,
        source,
        "users.json".into(),
        publisher,
        async {
            let _ = stopped.await;
        },
    ));
    let hash_is = |users: &tokio::sync::watch::Receiver<Arc<sstp_api::UsersDocument>>,
                   password: &str| {
        users
            .borrow()
            .users
            .get("alice")
            .is_some_and(|u| u.nt_hash.0 == nt_hash_hex(password))
    };
    tokio::time::timeout(TIMEOUT, users.wait_for(|doc| !doc.users.is_empty()))
        .await
        .expect("first document")
        .ok();
    assert!(hash_is(&users, "one"));

    let set = |text: String| {
        let secrets = secrets.clone();
        async move {
            let patch = serde_json::json!({"stringData": {"users.json": text}});
            secrets
                .patch("gw-users", &PatchParams::default(), &Patch::Merge(&patch))
                .await
        }
    };
    set("{ not json".to_owned()).await?;
    set(users_json("two")).await?;
    eventually("the second document", TIMEOUT, || {
        let found = hash_is(&users, "two");
        async move { Ok(found.then_some(())) }
    })
    .await?;

    set("{ not json".to_owned()).await?;
    // Wait for the refusal to have been seen: a later good write must still arrive after it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        hash_is(&users, "two"),
        "a bad document replaced the good one"
    );
    set(users_json("three")).await?;
    eventually("the third document", TIMEOUT, || {
        let found = hash_is(&users, "three");
        async move { Ok(found.then_some(())) }
    })
    .await?;
    let _ = stop.send(());
    task.await.expect("the watch task ends on shutdown");
    Ok(())
}

fn pair(hosts: &[&str]) -> (String, String) {
    let ca = CertificateAuthority::generate(
        "ca",
        time::OffsetDateTime::now_utc(),
        time::Duration::days(1),
        KeyAlgorithm::EcdsaP256,
    )
    .expect("a CA");
    let leaf = ca
        .issue_server_cert(&ServerCertRequest {
            hostnames: hosts.iter().map(|h| (*h).to_owned()).collect(),
            not_before: time::OffsetDateTime::now_utc(),
            validity: time::Duration::hours(1),
            algorithm: KeyAlgorithm::EcdsaP256,
        })
        .expect("a leaf");
    (leaf.chain_pem, leaf.key_pem)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_certificate_in_the_tls_secret_is_served_without_a_restart() -> Result<(), Error> {
    let control_plane = ControlPlane::shared()?;
    let admin = control_plane.client().await?;
    let namespace = TestNamespace::create(control_plane, &admin, "k8s-source-tls").await?;
    let ns = namespace.name();
    let files = CertFiles {
        cert: "/etc/sstp-gateway/tls/tls.crt".into(),
        key: "/etc/sstp-gateway/tls/tls.key".into(),
    };
    let first = pair(&["vpn.example.com"]);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), ns);
    secrets
        .create(
            &PostParams::default(),
            &secret(
                "gw-tls",
                &[
                    ("tls.crt", first.0.as_bytes()),
                    ("tls.key", first.1.as_bytes()),
                ],
            ),
        )
        .await?;
    let pod = gateway_identity(control_plane, &admin, ns).await?;
    let initial =
        TlsSnapshot::from_pem(first.0.as_bytes(), first.1.as_bytes(), &files).expect("loads");
    let first_hash = initial.hashes.sha256;
    let store = TlsStore::new(initial, Metrics::new());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(watch_tls_secret(
        pod.clone(),
        SecretRef::new(&pod, Some(ns), "gw-tls"),
        Arc::clone(&store),
        files,
        async {
            let _ = stopped.await;
        },
    ));

    let second = pair(&["vpn.example.com"]);
    let patch = serde_json::json!({"stringData": {"tls.crt": second.0, "tls.key": second.1}});
    secrets
        .patch("gw-tls", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    eventually("the new certificate in the store", TIMEOUT, || {
        let changed = store.snapshot().hashes.sha256 != first_hash;
        async move { Ok(changed.then_some(())) }
    })
    .await?;
    assert_eq!(secrets.get("gw-tls").await?.name_any(), "gw-tls");
    let _ = stop.send(());
    task.await.expect("the watch task ends on shutdown");
    Ok(())
}
