//! cert-manager mode: a `cert-manager.io/v1` `Certificate` named `<gw>` whose Secret is
//! `<gw>-tls`. Built as a `DynamicObject` so cert-manager is not a build dependency; the
//! controller applies it only when the CRD is installed and says so in `CertificateReady`
//! otherwise.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use sstp_api::{SstpGateway, gateway::CertManagerTls};

use crate::resources::Owner;

/// The `Certificate` API resource.
pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "cert-manager.io",
        "v1",
        "Certificate",
    ))
}

/// The Certificate for `gateway`.
pub fn certificate(
    gateway: &SstpGateway,
    owner: &Owner,
    settings: &CertManagerTls,
) -> DynamicObject {
    let hostnames = &gateway.spec.hostnames;
    let (ips, dns): (Vec<&String>, Vec<&String>) = hostnames
        .iter()
        .partition(|host| host.parse::<std::net::IpAddr>().is_ok());
    let mut object = DynamicObject::new(&owner.names.base, &api_resource());
    object.metadata = owner.meta(&owner.names.base);
    let mut spec = serde_json::json!({
        "secretName": owner.names.tls,
        "commonName": hostnames.first(),
        "usages": ["server auth", "digital signature", "key encipherment"],
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "issuerRef": {
            "name": settings.issuer_ref.name,
            "kind": settings.issuer_ref.kind,
            "group": settings.issuer_ref.group,
        },
    });
    if !dns.is_empty() {
        spec["dnsNames"] = serde_json::json!(dns);
    }
    if !ips.is_empty() {
        spec["ipAddresses"] = serde_json::json!(ips);
    }
    object.data = serde_json::json!({ "spec": spec });
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures;

    #[test]
    fn the_certificate_asks_for_every_hostname_and_server_auth_into_the_tls_secret() {
        let gateway = fixtures::gateway(serde_json::json!({
            "hostnames": ["vpn.example.com", "203.0.113.7"], "addressPool": "10.8.0.0/24",
            "tls": {"certManager": {"issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}}}
        }));
        let owner = Owner::of(&gateway).unwrap();
        let settings = gateway.spec.tls.cert_manager.clone().unwrap();
        let cert = certificate(&gateway, &owner, &settings);
        let spec = &cert.data["spec"];
        assert_eq!(spec["secretName"], "gw-tls");
        assert_eq!(spec["dnsNames"], serde_json::json!(["vpn.example.com"]));
        assert_eq!(spec["ipAddresses"], serde_json::json!(["203.0.113.7"]));
        assert_eq!(spec["issuerRef"]["kind"], "ClusterIssuer");
        assert_eq!(spec["issuerRef"]["group"], "cert-manager.io");
        assert!(
            spec["usages"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("server auth"))
        );
    }
}
