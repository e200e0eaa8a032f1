//! Certificate modes against the real control plane: built-in CA renewal at two thirds of a
//! short lifetime, bring-your-own checks explained in `CertificateReady`, cert-manager detection.

#![allow(clippy::unwrap_used)]

mod operator_support;

use k8s_openapi::{
    api::core::v1::Secret,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams},
};
use sstp_api::{SstpGateway, SstpGatewayStatus, condition::is_true};
use sstp_e2e::{Error, eventually};
use sstp_gateway::pki::{CertInfo, CertificateAuthority, KeyAlgorithm, ServerCertRequest};

use operator_support::{Operator, TIMEOUT, create, setup, stand_in_crd, status_until};

async fn gateway(client: &Client, ns: &str, tls: serde_json::Value) -> Result<(), Error> {
    create::<SstpGateway>(client, ns, serde_json::json!({
        "apiVersion": "sstp.io/v1alpha1", "kind": "SstpGateway",
        "metadata": {"name": "gw"},
        "spec": {"hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24", "replicas": 0, "tls": tls}
    }))
    .await?;
    Ok(())
}

fn certificate_reason(status: &SstpGatewayStatus) -> Option<&str> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "CertificateReady")
        .map(|c| c.reason.as_str())
}

fn served(secret: &Secret) -> CertInfo {
    let data = secret.data.clone().unwrap_or_default();
    CertInfo::from_pem(std::str::from_utf8(&data["tls.crt"].0).unwrap()).expect("a certificate")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_built_in_ca_renews_a_short_lived_certificate_with_the_same_ca() -> Result<(), Error> {
    let (client, namespace) = setup("renewal").await?;
    let ns = namespace.name();
    let operator = Operator::start(&client, ns, "op-a");
    gateway(
        &client,
        ns,
        serde_json::json!({"selfManaged": {"certificateLifetimeSeconds": 30}}),
    )
    .await?;
    let first = status_until(&client, ns, "a first certificate", |s| {
        s.certificate.is_some()
    })
    .await?;
    let first_cert = first.certificate.clone().unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let ca_before = secrets.get("gw-ca").await?.data.unwrap_or_default()["ca.crt"].clone();
    let info = served(&secrets.get("gw-tls").await?);
    assert_eq!(info.fingerprint_hex(), first_cert.sha256_fingerprint);

    // Renewal is due at two thirds of 30 s (about 20 s after issue); allow a generous bound.
    let renewed = status_until(&client, ns, "a renewed certificate", |s| {
        s.certificate
            .as_ref()
            .is_some_and(|c| c.sha256_fingerprint != first_cert.sha256_fingerprint)
    })
    .await?;
    let now = jiff::Timestamp::now().as_second();
    let new_info = served(&secrets.get("gw-tls").await?);
    assert_eq!(
        new_info.fingerprint_hex(),
        renewed.certificate.unwrap().sha256_fingerprint
    );
    assert!(
        now >= info.not_before + (info.not_after - info.not_before) * 2 / 3 - 1,
        "renewed before two thirds"
    );
    assert!(now < info.not_after, "renewed only after expiry");
    let ca_after = secrets.get("gw-ca").await?.data.unwrap_or_default()["ca.crt"].clone();
    assert_eq!(ca_before, ca_after, "renewal keeps the CA clients imported");
    operator.stop().await;
    Ok(())
}

fn tls_secret(name: &str, hosts: &[&str]) -> Secret {
    let now = time::OffsetDateTime::now_utc();
    let ca = CertificateAuthority::generate(
        "byo ca",
        now,
        time::Duration::days(30),
        KeyAlgorithm::EcdsaP256,
    )
    .expect("CA");
    let leaf = ca
        .issue_server_cert(&ServerCertRequest {
            hostnames: hosts.iter().map(|h| (*h).to_owned()).collect(),
            not_before: now,
            validity: time::Duration::days(10),
            algorithm: KeyAlgorithm::EcdsaP256,
        })
        .expect("leaf");
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": leaf.chain_pem, "tls.key": leaf.key_pem}
    }))
    .expect("valid Secret")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bring_your_own_secret_is_checked_and_explained_then_copied_when_it_fits()
-> Result<(), Error> {
    let (client, namespace) = setup("byo").await?;
    let ns = namespace.name();
    let operator = Operator::start(&client, ns, "op-a");
    gateway(&client, ns, serde_json::json!({"secretName": "mine"})).await?;
    let missing = status_until(&client, ns, "SecretNotFound", |s| {
        certificate_reason(s) == Some("SecretNotFound")
    })
    .await?;
    assert!(!is_true(&missing.conditions, "Ready"));

    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    secrets
        .create(
            &PostParams::default(),
            &tls_secret("mine", &["other.example.com"]),
        )
        .await?;
    let wrong = status_until(&client, ns, "InvalidCertificate", |s| {
        certificate_reason(s) == Some("InvalidCertificate")
    })
    .await?;
    let message = &wrong
        .conditions
        .iter()
        .find(|c| c.type_ == "CertificateReady")
        .unwrap()
        .message;
    assert!(message.contains("vpn.example.com"), "{message}");

    secrets.delete("mine", &DeleteParams::default()).await?;
    secrets
        .create(
            &PostParams::default(),
            &tls_secret("mine", &["vpn.example.com"]),
        )
        .await?;
    let good = status_until(&client, ns, "CertificateReady", |s| {
        is_true(&s.conditions, "CertificateReady")
    })
    .await?;
    let copied = eventually("gw-tls copied from the BYO Secret", TIMEOUT, || {
        let secrets = secrets.clone();
        async move { Ok(secrets.get_opt("gw-tls").await?) }
    })
    .await?;
    assert_eq!(
        served(&copied).fingerprint_hex(),
        good.certificate.unwrap().sha256_fingerprint
    );
    operator.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn cert_manager_mode_says_when_cert_manager_is_missing_and_creates_a_certificate_when_it_is_not()
-> Result<(), Error> {
    let (client, namespace) = setup("cert-manager").await?;
    let ns = namespace.name();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    // Only this test touches the cert-manager CRD; start from "not installed".
    let _ = crds
        .delete("certificates.cert-manager.io", &DeleteParams::default())
        .await;
    eventually("no cert-manager CRD", TIMEOUT, || {
        let crds = crds.clone();
        async move {
            Ok(crds
                .get_opt("certificates.cert-manager.io")
                .await?
                .is_none()
                .then_some(()))
        }
    })
    .await?;
    let operator = Operator::start(&client, ns, "op-a");
    gateway(
        &client,
        ns,
        serde_json::json!({"certManager": {"issuerRef": {"name": "le", "kind": "ClusterIssuer"}}}),
    )
    .await?;
    let missing = status_until(&client, ns, "CertManagerNotInstalled", |s| {
        certificate_reason(s) == Some("CertManagerNotInstalled")
    })
    .await?;
    let message = &missing
        .conditions
        .iter()
        .find(|c| c.type_ == "CertificateReady")
        .unwrap()
        .message;
    assert!(message.contains("cert-manager"), "{message}");

    // A stand-in for cert-manager's CRD (schema-less), enough for the operator to detect it.
    let resource = sstp_operator::certs::cert_manager::api_resource();
    stand_in_crd(&client, &resource).await?;
    let certificates: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    // Nudge a reconcile (the CRD appearing is not something the operator watches).
    Api::<SstpGateway>::namespaced(client.clone(), ns)
        .patch(
            "gw",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"nudge": "1"}}})),
        )
        .await?;
    let certificate = eventually("a cert-manager Certificate", TIMEOUT, || {
        let certificates = certificates.clone();
        async move {
            // The CRD may take a moment to be served.
            Ok(certificates.get_opt("gw").await.ok().flatten())
        }
    })
    .await?;
    assert_eq!(certificate.data["spec"]["secretName"], "gw-tls");
    assert_eq!(
        certificate.data["spec"]["dnsNames"],
        serde_json::json!(["vpn.example.com"])
    );
    status_until(&client, ns, "WaitingForCertManager", |s| {
        certificate_reason(s) == Some("WaitingForCertManager")
    })
    .await?;
    operator.stop().await;
    crds.delete("certificates.cert-manager.io", &DeleteParams::default())
        .await?;
    Ok(())
}
