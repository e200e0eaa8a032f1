//! The gateway's status, computed from what the reconcile found (pure).

use k8s_openapi::{
    api::{apps::v1::Deployment, core::v1::Service},
    apimachinery::pkg::apis::meta::v1::Time,
};
use sstp_api::{
    SstpGateway, SstpGatewayStatus,
    condition::{condition, reasons, set_condition, types},
    gateway::CertificateStatus,
};

/// The certificate's part of the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateReport {
    /// Whether a usable certificate is served.
    pub ready: bool,
    /// Condition reason.
    pub reason: &'static str,
    /// Condition message.
    pub message: String,
    /// The certificate facts, when ready.
    pub status: Option<CertificateStatus>,
}

/// What the reconcile observed.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// The stored Deployment.
    pub deployment: Option<&'a Deployment>,
    /// The stored Service.
    pub service: Option<&'a Service>,
    /// Certificate facts.
    pub certificate: &'a CertificateReport,
    /// Users in the document.
    pub users: usize,
}

/// The new status of `gateway`, keeping transition times of unchanged conditions.
pub fn gateway_status(
    gateway: &SstpGateway,
    observed: &Observed<'_>,
    now: Time,
) -> SstpGatewayStatus {
    let generation = gateway.metadata.generation;
    let old = gateway.status.clone().unwrap_or_default();
    let mut conditions = old.conditions;
    let desired = gateway.spec.replicas;
    let deployment_status = observed
        .deployment
        .and_then(|d| d.status.clone())
        .unwrap_or_default();
    let deployment_generation = observed.deployment.and_then(|d| d.metadata.generation);
    let ready_replicas = deployment_status.ready_replicas.unwrap_or(0);
    let available_replicas = deployment_status.available_replicas.unwrap_or(0);
    let updated = deployment_status.updated_replicas.unwrap_or(0);
    let caught_up = deployment_status.observed_generation >= deployment_generation;
    let available = available_replicas >= desired;
    let progressing =
        !caught_up || updated < desired || deployment_status.replicas.unwrap_or(0) > desired;
    let cert = observed.certificate;

    set_condition(
        &mut conditions,
        condition(
            types::CERTIFICATE_READY,
            cert.ready,
            cert.reason,
            cert.message.clone(),
            generation,
            now.clone(),
        ),
    );
    set_condition(
        &mut conditions,
        condition(
            types::AVAILABLE,
            available,
            if available {
                reasons::AS_EXPECTED
            } else {
                reasons::PODS_NOT_READY
            },
            format!("{available_replicas} of {desired} pods available"),
            generation,
            now.clone(),
        ),
    );
    set_condition(
        &mut conditions,
        condition(
            types::PROGRESSING,
            progressing,
            if progressing {
                reasons::ROLLING_OUT
            } else {
                reasons::ROLLED_OUT
            },
            format!("{updated} of {desired} pods updated"),
            generation,
            now.clone(),
        ),
    );
    let degraded = !cert.ready;
    set_condition(
        &mut conditions,
        condition(
            types::DEGRADED,
            degraded,
            if degraded {
                cert.reason
            } else {
                reasons::AS_EXPECTED
            },
            if degraded {
                cert.message.clone()
            } else {
                String::new()
            },
            generation,
            now.clone(),
        ),
    );
    let ready = cert.ready && available;
    let (reason, message) = if !cert.ready {
        (cert.reason, cert.message.clone())
    } else if !available {
        (
            reasons::PODS_NOT_READY,
            format!("{available_replicas} of {desired} pods available"),
        )
    } else {
        (reasons::RECONCILED, format!("{desired} pods serving"))
    };
    set_condition(
        &mut conditions,
        condition(types::READY, ready, reason, message, generation, now),
    );

    SstpGatewayStatus {
        observed_generation: generation,
        conditions,
        ready_replicas: Some(ready_replicas),
        endpoints: endpoints(gateway, observed.service),
        certificate: cert.status.clone(),
        users: i32::try_from(observed.users).ok(),
        active_sessions: old.active_sessions,
    }
}

/// Load balancer addresses and hostnames of the Service, else the first hostname.
fn endpoints(gateway: &SstpGateway, service: Option<&Service>) -> Vec<String> {
    let ingress: Vec<String> = service
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .collect();
    if ingress.is_empty() {
        gateway
            .spec
            .hostnames
            .first()
            .cloned()
            .into_iter()
            .collect()
    } else {
        ingress
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::DeploymentStatus;
    use sstp_api::condition::is_true;

    use super::*;
    use crate::resources::fixtures;

    fn time(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).unwrap())
    }

    fn deployment(available: i32) -> Deployment {
        Deployment {
            metadata: kube::core::ObjectMeta {
                generation: Some(1),
                ..Default::default()
            },
            status: Some(DeploymentStatus {
                observed_generation: Some(1),
                replicas: Some(2),
                updated_replicas: Some(2),
                ready_replicas: Some(available),
                available_replicas: Some(available),
                ..DeploymentStatus::default()
            }),
            ..Deployment::default()
        }
    }

    fn cert(ready: bool) -> CertificateReport {
        CertificateReport {
            ready,
            reason: if ready {
                reasons::ISSUED
            } else {
                reasons::SECRET_NOT_FOUND
            },
            message: String::new(),
            status: None,
        }
    }

    #[test]
    fn ready_needs_the_certificate_and_every_desired_pod() {
        let gateway = fixtures::minimal();
        let full = deployment(2);
        let good = cert(true);
        let status = gateway_status(
            &gateway,
            &Observed {
                deployment: Some(&full),
                service: None,
                certificate: &good,
                users: 2,
            },
            time(1),
        );
        assert!(is_true(&status.conditions, types::READY));
        assert!(!is_true(&status.conditions, types::PROGRESSING));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.endpoints, ["vpn.example.com"]);

        let half = deployment(1);
        let status = gateway_status(
            &gateway,
            &Observed {
                deployment: Some(&half),
                service: None,
                certificate: &good,
                users: 2,
            },
            time(1),
        );
        assert!(!is_true(&status.conditions, types::READY));

        let bad = cert(false);
        let status = gateway_status(
            &gateway,
            &Observed {
                deployment: Some(&full),
                service: None,
                certificate: &bad,
                users: 2,
            },
            time(1),
        );
        assert!(!is_true(&status.conditions, types::READY));
        assert!(is_true(&status.conditions, types::DEGRADED));
    }

    #[test]
    fn recomputing_an_unchanged_world_gives_an_identical_status() {
        let mut gateway = fixtures::minimal();
        let full = deployment(2);
        let good = cert(true);
        let observed = Observed {
            deployment: Some(&full),
            service: None,
            certificate: &good,
            users: 0,
        };
        let first = gateway_status(&gateway, &observed, time(1));
        gateway.status = Some(first.clone());
        assert_eq!(gateway_status(&gateway, &observed, time(99)), first);
    }
}
