//! Test gateways and users.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sstp_api::{SstpGateway, SstpGatewaySpec};

/// A stored-looking gateway `gw` in namespace `ns` parsed from a spec in JSON.
pub(crate) fn gateway(spec: serde_json::Value) -> SstpGateway {
    let spec: SstpGatewaySpec = serde_json::from_value(spec).unwrap();
    SstpGateway {
        metadata: ObjectMeta {
            name: Some("gw".into()),
            namespace: Some("ns".into()),
            uid: Some("0000-uid".into()),
            generation: Some(3),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// The smallest valid gateway.
pub(crate) fn minimal() -> SstpGateway {
    gateway(serde_json::json!({
        "hostnames": ["vpn.example.com", "203.0.113.7"],
        "addressPool": "10.8.0.0/24"
    }))
}
