//! Service `<gw>`: 443/TCP for SSTP and 80/TCP for the CRL and CA download, with the type,
//! annotations, load balancer class, source ranges and traffic policy of the spec.

use k8s_openapi::{
    api::core::v1::{Service, ServicePort, ServiceSpec},
    apimachinery::pkg::util::intstr::IntOrString,
};
use sstp_api::{
    SstpGateway,
    gateway::{ServiceType, TrafficPolicy},
};

use super::{Owner, ports};

/// The Service of `gateway`.
pub fn service(gateway: &SstpGateway, owner: &Owner) -> Service {
    let spec = &gateway.spec.service;
    let mut metadata = owner.meta(&owner.names.base);
    if !spec.annotations.is_empty() {
        metadata.annotations = Some(spec.annotations.clone());
    }
    if let Some(labels) = metadata.labels.as_mut() {
        for (key, value) in &spec.labels {
            labels.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    let port = |name: &str, port: i32, target: i32| ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::Int(target)),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    };
    let type_ = match spec.type_ {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    let external = spec.type_ != ServiceType::ClusterIP;
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(type_.to_owned()),
            selector: Some(owner.selector_labels()),
            ports: Some(vec![
                port("sstp", spec.ports.sstp, ports::SSTP),
                port("http", spec.ports.http, ports::HTTP),
            ]),
            load_balancer_class: spec
                .load_balancer_class
                .clone()
                .filter(|_| spec.type_ == ServiceType::LoadBalancer),
            load_balancer_source_ranges: (!spec.load_balancer_source_ranges.is_empty()
                && spec.type_ == ServiceType::LoadBalancer)
                .then(|| spec.load_balancer_source_ranges.clone()),
            external_traffic_policy: spec.external_traffic_policy.filter(|_| external).map(
                |policy| match policy {
                    TrafficPolicy::Cluster => "Cluster".to_owned(),
                    TrafficPolicy::Local => "Local".to_owned(),
                },
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures;

    #[test]
    fn the_service_exposes_sstp_and_http_and_passes_load_balancer_settings_through() {
        let gateway = fixtures::gateway(serde_json::json!({
            "hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24",
            "service": {
                "annotations": {"external-dns.alpha.kubernetes.io/hostname": "vpn.example.com"},
                "loadBalancerClass": "example.com/lb",
                "loadBalancerSourceRanges": ["198.51.100.0/24"],
                "externalTrafficPolicy": "Local",
                "ports": {"sstp": 8443}
            }
        }));
        let owner = Owner::of(&gateway).unwrap();
        let service = service(&gateway, &owner);
        let spec = service.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        let ports: Vec<_> = spec
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.port, p.target_port.unwrap()))
            .collect();
        assert_eq!(
            ports,
            [
                ("sstp".to_owned(), 8443, IntOrString::Int(443)),
                ("http".to_owned(), 80, IntOrString::Int(80))
            ]
        );
        assert_eq!(spec.load_balancer_class.as_deref(), Some("example.com/lb"));
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
        assert_eq!(
            spec.load_balancer_source_ranges.unwrap(),
            ["198.51.100.0/24"]
        );
        assert!(
            service
                .metadata
                .annotations
                .unwrap()
                .contains_key("external-dns.alpha.kubernetes.io/hostname")
        );
    }

    #[test]
    fn a_cluster_ip_service_gets_no_load_balancer_fields() {
        let gateway = fixtures::gateway(serde_json::json!({
            "hostnames": ["vpn.example.com"], "addressPool": "10.8.0.0/24",
            "service": {"type": "ClusterIP", "loadBalancerClass": "x", "externalTrafficPolicy": "Local"}
        }));
        let owner = Owner::of(&gateway).unwrap();
        let spec = service(&gateway, &owner).spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.load_balancer_class, None);
        assert_eq!(spec.external_traffic_policy, None);
    }
}
