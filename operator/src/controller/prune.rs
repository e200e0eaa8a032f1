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
    // A kind whose CRD is not installed answers 404 too, which reads as absent.
    let Some(existing) = api.get_opt(name).await? else {
        return Ok(Pruned::Absent);
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
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(Pruned::Absent),
        Err(err) => Err(err.into()),
    }
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
