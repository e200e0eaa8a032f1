//! The gateway's status, computed from what the reconcile found (pure).
//!
//! Pods that cannot start (see [`pod_problem`]) make `Available` (when short of pods) and `Ready`
//! carry the kubelet's or the admission's reason and message, and `Degraded` True even while
//! older pods still serve (a rollout that cannot finish). The certificate's problems come first.

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{Pod, Service},
    },
    apimachinery::pkg::apis::meta::v1::Time,
};
use sstp_api::{
    SstpGateway, SstpGatewayStatus,
    condition::{condition, reasons, set_condition, types},
    gateway::CertificateStatus,
};

use super::pod_health::{PodProblem, pod_problem};

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
    /// The gateway's pods (by its selector labels).
    pub pods: &'a [Pod],
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
    let problem = pod_problem(observed.pods, observed.deployment, desired);
    let pods_available = format!("{available_replicas} of {desired} pods available");

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
    let (reason, message) = match (&problem, available) {
        (_, true) => (reasons::AS_EXPECTED, pods_available.clone()),
        (Some(PodProblem { reason, message }), false) => {
            (*reason, format!("{pods_available}; {message}"))
        }
        (None, false) => (reasons::PODS_NOT_READY, pods_available.clone()),
    };
    set_condition(
        &mut conditions,
        condition(
            types::AVAILABLE,
            available,
            reason,
            message,
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
    let (degraded, reason, message) = match (&problem, cert.ready) {
        (_, false) => (true, cert.reason, cert.message.clone()),
        (Some(problem), true) => (true, problem.reason, problem.message.clone()),
        (None, true) => (false, reasons::AS_EXPECTED, String::new()),
    };
    set_condition(
        &mut conditions,
        condition(
            types::DEGRADED,
            degraded,
            reason,
            message,
            generation,
            now.clone(),
        ),
    );
    let ready = cert.ready && available;
    let (reason, message) = if !cert.ready {
        (cert.reason, cert.message.clone())
    } else if !available {
        problem.map_or((reasons::PODS_NOT_READY, pods_available), |p| {
            (p.reason, p.message)
        })
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
        // The census' field (see `crate::census`): kept so an unchanged status compares equal.
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
                pods: &[],
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
                pods: &[],
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
                pods: &[],
                certificate: &bad,
                users: 2,
            },
            time(1),
        );
        assert!(!is_true(&status.conditions, types::READY));
        assert!(is_true(&status.conditions, types::DEGRADED));
    }

    #[test]
    fn a_pod_the_kubelet_rejects_is_named_in_available_degraded_and_ready_until_pods_serve() {
        let mut gateway = fixtures::minimal();
        let none = deployment(0);
        let good = cert(true);
        let rejected: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "gw-5c7d8-x2b4q"},
            "status": {"phase": "Failed", "reason": "SysctlForbidden",
                       "message": "forbidden sysctl: \"net.ipv4.ip_forward\" not allowlisted"},
        }))
        .unwrap();
        let pods = [rejected];
        let observed = Observed {
            deployment: Some(&none),
            service: None,
            pods: &pods,
            certificate: &good,
            users: 0,
        };
        let status = gateway_status(&gateway, &observed, time(1));
        let find = |status: &SstpGatewayStatus, type_: &str| {
            status
                .conditions
                .iter()
                .find(|c| c.type_ == type_)
                .cloned()
                .unwrap()
        };
        for type_ in [types::AVAILABLE, types::READY, types::DEGRADED] {
            let condition = find(&status, type_);
            assert_eq!(condition.reason, "SysctlForbidden", "{type_}");
            assert!(
                condition.message.contains("pod gw-5c7d8-x2b4q")
                    && condition.message.contains("not allowlisted"),
                "{type_}: {}",
                condition.message
            );
        }
        assert!(is_true(&status.conditions, types::DEGRADED));
        assert!(
            find(&status, types::AVAILABLE)
                .message
                .starts_with("0 of 2 pods available; ")
        );
        // Unchanged: identical, so no write.
        gateway.status = Some(status.clone());
        assert_eq!(gateway_status(&gateway, &observed, time(50)), status);

        // The node is fixed and the replacements serve: the leftover failed pod is forgotten.
        let full = deployment(2);
        let ready_pod = |name: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
            }))
            .unwrap()
        };
        let pods = [pods[0].clone(), ready_pod("gw-a"), ready_pod("gw-b")];
        let serving = Observed {
            deployment: Some(&full),
            pods: &pods,
            ..observed
        };
        let status = gateway_status(&gateway, &serving, time(99));
        assert!(is_true(&status.conditions, types::READY));
        assert!(!is_true(&status.conditions, types::DEGRADED));
        assert_eq!(find(&status, types::DEGRADED).reason, reasons::AS_EXPECTED);
    }

    #[test]
    fn recomputing_an_unchanged_world_gives_an_identical_status() {
        let mut gateway = fixtures::minimal();
        let full = deployment(2);
        let good = cert(true);
        let observed = Observed {
            deployment: Some(&full),
            service: None,
            pods: &[],
            certificate: &good,
            users: 0,
        };
        let first = gateway_status(&gateway, &observed, time(1));
        gateway.status = Some(first.clone());
        assert_eq!(gateway_status(&gateway, &observed, time(99)), first);
    }
}
