//! Deleting the children a gateway no longer wants: the built-in CA's Secret after a switch to
//! cert-manager or bring-your-own, the cert-manager Certificate after a switch away from it (or
//! cert-manager would keep rewriting `<gw>-tls` under the operator), the ServiceMonitor and the
//! metrics Service once monitoring is off. Garbage collection only helps when the gateway goes;
//! these go while it stays.
//!
//! Only objects this gateway controls are deleted: the controller owner reference must carry its
//! uid, so a same-named object someone else made is left alone. The delete carries the uid and
//! resourceVersion that were checked as preconditions, so an object replaced or re-owned in
//! between is not deleted (the conflict is retried with the next reconcile).

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, Preconditions},
};
use serde::de::DeserializeOwned;
use sstp_api::SstpGatewaySpec;

use crate::{Result, metrics::Metrics};

/// A child that exists only in some configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conditional {
    /// Secret `<gw>-ca`: the built-in CA (self-managed TLS).
    CaSecret,
    /// cert-manager Certificate `<gw>` (cert-manager TLS).
    Certificate,
    /// ServiceMonitor `<gw>` (monitoring on, CRD installed).
    ServiceMonitor,
    /// Service `<gw>-metrics` (made together with the ServiceMonitor).
    MetricsService,
}

impl Conditional {
    /// Why it is not wanted, for the event.
    pub fn why_unwanted(self) -> &'static str {
        match self {
            Self::CaSecret => "spec.tls is no longer selfManaged",
            Self::Certificate => "spec.tls is no longer certManager",
            Self::ServiceMonitor | Self::MetricsService => {
                "spec.monitoring.serviceMonitor is off (or its CRD is not installed)"
            }
        }
    }
}

/// The conditional children `spec` does not want; `monitored` says whether the ServiceMonitor
/// and its Service were applied this time.
pub fn unwanted(spec: &SstpGatewaySpec, monitored: bool) -> Vec<Conditional> {
    let tls = &spec.tls;
    let cert_manager = tls.cert_manager.is_some();
    // Self-managed is also the mode when nothing is set (the default).
    let self_managed = !cert_manager && tls.secret_name.is_none();
    let mut unwanted = Vec::new();
    if !self_managed {
        unwanted.push(Conditional::CaSecret);
    }
    if !cert_manager {
        unwanted.push(Conditional::Certificate);
    }
    if !monitored {
        unwanted.extend([Conditional::ServiceMonitor, Conditional::MetricsService]);
    }
    unwanted
}

/// Whether `references` make the object with `uid` its controller.
pub fn controlled_by(references: &[OwnerReference], uid: &str) -> bool {
    references
        .iter()
        .any(|r| r.controller == Some(true) && r.uid == uid)
}

/// What [`delete_if_controlled`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pruned {
    /// Nothing of that name (or its kind is not even installed).
    Absent,
    /// Deleted.
    Deleted,
    /// It exists but this gateway does not control it: left alone.
    NotOurs,
}

/// Deletes `name` if the object with `owner_uid` controls it.
pub async fn delete_if_controlled<K>(
    api: &Api<K>,
    name: &str,
    owner_uid: &str,
    dynamic_type: &K::DynamicType,
    metrics: &Metrics,
) -> Result<Pruned>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let existing = match api.get(name).await {
        Ok(existing) => existing,
        Err(err) if not_found(&err) => return Ok(Pruned::Absent),
        Err(err) => return Err(err.into()),
    };
    if !controlled_by(existing.owner_references(), owner_uid) {
        return Ok(Pruned::NotOurs);
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: existing.uid(),
            resource_version: existing.resource_version(),
        }),
        ..DeleteParams::background()
    };
    match api.delete(name, &params).await {
        Ok(_) => {
            metrics.wrote(&K::kind(dynamic_type));
            Ok(Pruned::Deleted)
        }
        Err(err) if not_found(&err) => Ok(Pruned::Absent),
        Err(err) => Err(err.into()),
    }
}

/// A 404, also the plain-text "404 page not found" of a kind whose CRD is not installed (which
/// `Api::get_opt` does not take for "not found": the body is no `Status`, so its reason is not
/// `NotFound`).
fn not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures;

    fn spec(tls: serde_json::Value, monitoring: bool) -> SstpGatewaySpec {
        fixtures::gateway(serde_json::json!({
            "hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24", "tls": tls,
            "monitoring": {"serviceMonitor": {"enabled": monitoring}}
        }))
        .spec
    }

    #[test]
    fn each_mode_leaves_out_exactly_the_children_of_the_other_modes() {
        use Conditional::{CaSecret, Certificate, MetricsService, ServiceMonitor};
        let cases = [
            (
                serde_json::json!({"selfManaged": {}}),
                true,
                vec![Certificate],
            ),
            (serde_json::json!({}), true, vec![Certificate]),
            (
                serde_json::json!({"certManager": {"issuerRef": {"name": "le"}}}),
                true,
                vec![CaSecret],
            ),
            (
                serde_json::json!({"secretName": "mine"}),
                false,
                vec![CaSecret, Certificate, ServiceMonitor, MetricsService],
            ),
        ];
        for (tls, monitored, expected) in cases {
            assert_eq!(
                unwanted(&spec(tls.clone(), monitored), monitored),
                expected,
                "{tls}"
            );
        }
    }

    #[test]
    fn the_plain_404_of_a_kind_that_is_not_installed_reads_as_absent() {
        // What kube makes of the apiserver's "404 page not found" (a body that is no Status).
        let plain = kube::core::Status::failure("404 page not found", "Failed to parse error data")
            .with_code(404);
        assert!(!plain.is_not_found(), "kube's own check misses it");
        assert!(not_found(&kube::Error::Api(plain.boxed())));
        let forbidden = kube::core::Status::failure("no", "Forbidden").with_code(403);
        assert!(!not_found(&kube::Error::Api(forbidden.boxed())));
    }

    #[test]
    fn only_a_controller_reference_with_the_gateways_uid_counts() {
        let reference = |uid: &str, controller: Option<bool>| OwnerReference {
            api_version: "sstp.io/v1alpha1".into(),
            kind: "SstpGateway".into(),
            name: "gw".into(),
            uid: uid.into(),
            controller,
            block_owner_deletion: None,
        };
        assert!(controlled_by(&[reference("u1", Some(true))], "u1"));
        assert!(
            !controlled_by(&[reference("u2", Some(true))], "u1"),
            "an older gateway of the same name"
        );
        assert!(
            !controlled_by(&[reference("u1", None)], "u1"),
            "not the controller"
        );
        assert!(!controlled_by(&[], "u1"), "someone else's object");
    }
}
