//! ServiceMonitor `<gw>` (`monitoring.coreos.com/v1`) for the admin port, built as a
//! `DynamicObject` so the operator does not depend on the Prometheus operator's types; the
//! controller applies it only when that CRD is installed. It scrapes Service `<gw>-metrics`
//! (ClusterIP, admin port only), made only together with the ServiceMonitor so the admin port is
//! never exposed through the gateway's public load balancer.

use k8s_openapi::{
    api::core::v1::{Service, ServicePort, ServiceSpec},
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::{
    api::{ApiResource, DynamicObject, GroupVersionKind},
    core::ObjectMeta,
};
use sstp_api::SstpGateway;

use super::{Owner, ports};

/// Name of the metrics Service of gateway `base`.
pub fn metrics_service_name(base: &str) -> String {
    format!("{base}-metrics")
}

/// The ClusterIP Service of the admin port, or `None` when monitoring is off.
pub fn metrics_service(gateway: &SstpGateway, owner: &Owner) -> Option<Service> {
    if !gateway.spec.monitoring.service_monitor.enabled {
        return None;
    }
    let mut metadata = owner.meta(&metrics_service_name(&owner.names.base));
    if let Some(labels) = metadata.labels.as_mut() {
        labels.insert(METRICS_LABEL.to_owned(), "true".to_owned());
    }
    Some(Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(owner.selector_labels()),
            ports: Some(vec![ServicePort {
                name: Some("admin".to_owned()),
                port: ports::ADMIN,
                target_port: Some(IntOrString::Int(ports::ADMIN)),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// The ServiceMonitor's API resource.
pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "monitoring.coreos.com",
        "v1",
        "ServiceMonitor",
    ))
}

/// The ServiceMonitor of `gateway`, or `None` when the spec does not ask for one.
pub fn service_monitor(gateway: &SstpGateway, owner: &Owner) -> Option<DynamicObject> {
    let settings = &gateway.spec.monitoring.service_monitor;
    if !settings.enabled {
        return None;
    }
    let mut metadata: ObjectMeta = owner.meta(&owner.names.base);
    if let Some(labels) = metadata.labels.as_mut() {
        labels.extend(settings.labels.clone());
    }
    let mut object = DynamicObject::new(&owner.names.base, &api_resource());
    object.metadata = metadata;
    object.data = serde_json::json!({
        "spec": {
            // The job is named after the metrics Service's name label, sstp-gateway, the same for
            // every gateway, so the chart's alerts select gateways by job (the default, the
            // Service's name `<gw>-metrics`, would also match other apps' `*-metrics` Services).
            "jobLabel": super::NAME_LABEL,
            "selector": {"matchLabels": {
                super::INSTANCE_LABEL: owner.names.base,
                METRICS_LABEL: "true",
            }},
            "endpoints": [{"port": "admin", "path": "/metrics"}]
        }
    });
    Some(object)
}

/// Label that tells the metrics Service from the public one.
pub const METRICS_LABEL: &str = "sstp.io/metrics";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures;

    #[test]
    fn a_service_monitor_is_built_only_when_enabled() {
        let mut gateway = fixtures::minimal();
        let owner = Owner::of(&gateway).unwrap();
        assert!(service_monitor(&gateway, &owner).is_none());
        assert!(metrics_service(&gateway, &owner).is_none());
        gateway.spec.monitoring.service_monitor.enabled = true;
        let monitor = service_monitor(&gateway, &owner).unwrap();
        assert_eq!(monitor.data["spec"]["endpoints"][0]["port"], "admin");
        assert_eq!(monitor.data["spec"]["jobLabel"], "app.kubernetes.io/name");
        assert_eq!(monitor.types.unwrap().kind, "ServiceMonitor");
        let service = metrics_service(&gateway, &owner).unwrap();
        // The job name prometheus-operator takes from the Service (jobLabel above).
        assert_eq!(
            service.metadata.labels.unwrap()["app.kubernetes.io/name"],
            "sstp-gateway"
        );
        assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, 9090);
    }
}
