//! The `SstpGateway` reconciler: certificate, users document, configuration, workload, status.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use jiff::Timestamp;
use k8s_openapi::{
    api::core::v1::{Pod, Secret, Service},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube::{
    Api, ResourceExt,
    api::{DynamicObject, ListParams, Patch, PatchParams},
    runtime::controller::Action,
};
use sstp_api::{SstpGateway, SstpUser, gateway::CertificateStatus, user::PasswordSecretRef};
use tracing::{debug, info, instrument};

use super::{
    Context, RESYNC,
    apply::apply_with,
    prune::{Conditional, Pruned, delete_if_controlled, unwanted},
    status::{CertificateReport, Observed, gateway_status},
};
use crate::{
    FIELD_MANAGER, Result,
    certs::{self, byo, cert_manager, self_managed},
    resources::{
        Owner,
        config::{TlsExtras, config_map, gateway_config},
        deployment::{PodInputs, deployment},
        pdb::pod_disruption_budget,
        rbac::{role, role_binding, service_account},
        secrets::{ca_secret, read_ca, read_tls, text, tls_secret, users_secret},
        service::service,
        service_monitor::{self, metrics_service},
        users::{Skipped, compile},
    },
};
use sstp_api::condition::reasons;

/// Name of this controller in metrics.
pub const CONTROLLER: &str = "gateway";

/// Reconciles one gateway.
#[instrument(skip_all, fields(namespace = gateway.namespace(), gateway = gateway.name_any()))]
pub async fn reconcile(gateway: Arc<SstpGateway>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    if gateway.metadata.deletion_timestamp.is_some() {
        // Children go with the owner references; nothing outside them to clean up.
        return Ok(Action::await_change());
    }
    let owner = Owner::of(&gateway)?;
    let now = Timestamp::now();
    let client = &ctx.client;
    let ns = owner.namespace.as_str();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);

    let (report, extras, revisit) = certificate(&gateway, &owner, &ctx, &secrets, now).await?;

    let users = ctx.users_in(ns).await?;
    let passwords = read_passwords(&ctx, &secrets, &users).await?;
    let compiled = compile(
        gateway.spec.users.selector.as_ref(),
        &users,
        |reference| {
            passwords
                .get(&(reference.name.clone(), reference.key.clone()))
                .cloned()
        },
        now,
    );
    for (user, why) in &compiled.skipped {
        debug!(user, ?why, "user left out of the users document");
    }
    let (_, users_changed) = ctx.apply(users_secret(&owner, &compiled.document)).await?;
    if users_changed {
        info!(
            users = compiled.document.users.len(),
            "users document updated"
        );
        let skipped = compiled
            .skipped
            .iter()
            .filter(|(_, why)| *why != Skipped::PasswordMissing)
            .count();
        let note = format!(
            "{} users in the document, {skipped} left out (duplicates)",
            compiled.document.users.len()
        );
        ctx.event(gateway.as_ref(), "UsersUpdated", note, false)
            .await;
    }

    let config = gateway_config(&gateway, &owner, extras)?;
    let config_json = config.to_json_pretty();
    ctx.apply(config_map(&owner, &config)).await?;
    ctx.apply(service_account(&owner)).await?;
    ctx.apply(role(&owner)).await?;
    ctx.apply(role_binding(&owner)).await?;
    let inputs = PodInputs {
        default_image: &ctx.gateway_image,
        default_pull_policy: ctx.gateway_pull_policy,
        config_json: &config_json,
    };
    let (stored_deployment, _) = ctx.apply(deployment(&gateway, &owner, &inputs)).await?;
    let (stored_service, _) = ctx.apply(service(&gateway, &owner)).await?;
    ctx.apply(pod_disruption_budget(&owner)).await?;
    let monitored = monitoring(&gateway, &owner, &ctx).await?;
    prune(&gateway, &owner, &ctx, monitored).await?;

    let pods = gateway_pods(&ctx, &owner).await?;
    let observed = Observed {
        deployment: Some(&stored_deployment),
        service: Some(&stored_service),
        pods: &pods,
        certificate: &report,
        users: compiled.document.users.len(),
    };
    let status = gateway_status(&gateway, &observed, Time(now));
    if gateway.status.as_ref() != Some(&status) {
        patch_status(&ctx, &gateway, &status).await?;
    }

    let next = [revisit, compiled.next_expiry].into_iter().flatten().min();
    Ok(Action::requeue(until(next, now)))
}

/// Certificate for the gateway's mode: the report for status, which CA files `<gw>-tls`
/// carries, and when to look again.
async fn certificate(
    gateway: &SstpGateway,
    owner: &Owner,
    ctx: &Context,
    secrets: &Api<Secret>,
    now: Timestamp,
) -> Result<(CertificateReport, TlsExtras, Option<Timestamp>)> {
    let tls = &gateway.spec.tls;
    let hostnames = &gateway.spec.hostnames;
    if let Some(settings) = &tls.cert_manager {
        if !crd_exists(ctx, CERT_MANAGER_CRD).await? {
            let report = failed(reasons::CERT_MANAGER_MISSING, "tls.certManager is set but the cert-manager CRDs (certificates.cert-manager.io) are not installed".to_owned());
            return Ok((
                report,
                TlsExtras {
                    ca: false,
                    crl: false,
                },
                None,
            ));
        }
        let resource = cert_manager::api_resource();
        let api =
            Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &owner.namespace, &resource);
        apply_with(
            &api,
            cert_manager::certificate(gateway, owner, settings),
            &resource,
            None,
            &ctx.metrics,
        )
        .await?;
        return check_stored(
            secrets,
            &owner.names.tls,
            hostnames,
            now,
            reasons::WAITING_FOR_CERT_MANAGER,
        )
        .await;
    }
    if let Some(name) = &tls.secret_name {
        let (report, extras, revisit) =
            check_stored(secrets, name, hostnames, now, reasons::SECRET_NOT_FOUND).await?;
        if report.ready
            && let Some(material) = secrets.get_opt(name).await?.as_ref().and_then(read_tls)
        {
            // Copied into <gw>-tls so the pods mount and watch one fixed, RBAC-named Secret.
            ctx.apply(tls_secret(owner, &material)).await?;
        }
        return Ok((report, extras, revisit));
    }
    let settings = tls.self_managed.clone().unwrap_or_default();
    // Read from the API server, never the cache (`cache.rs`): a cache lagging the CA a previous
    // reconcile wrote would issue a second one.
    let stored_ca = secrets
        .get_opt(&owner.names.ca)
        .await?
        .as_ref()
        .and_then(read_ca);
    let stored_tls = secrets
        .get_opt(&owner.names.tls)
        .await?
        .as_ref()
        .and_then(read_tls);
    let outcome = self_managed::reconcile(stored_ca, stored_tls, hostnames, &settings, now)?;
    ctx.apply(ca_secret(owner, &outcome.ca)).await?;
    ctx.apply(tls_secret(owner, &outcome.tls)).await?;
    if outcome.issued {
        let note = format!(
            "issued a server certificate valid until {}",
            certs::not_after_text(&outcome.checked.info)
        );
        ctx.event(gateway, "CertificateIssued", note, false).await;
    }
    let report = CertificateReport {
        ready: true,
        reason: reasons::ISSUED,
        message: "issued by the built-in CA; clients import ca.crt from /sstp/ca.crt".to_owned(),
        status: Some(cert_status(&outcome.checked.info, &owner.names.tls)),
    };
    Ok((
        report,
        TlsExtras {
            ca: true,
            crl: true,
        },
        Some(outcome.checked.revisit_at),
    ))
}

/// Checks a TLS Secret someone else writes (BYO or cert-manager).
async fn check_stored(
    secrets: &Api<Secret>,
    name: &str,
    hostnames: &[String],
    now: Timestamp,
    missing_reason: &'static str,
) -> Result<(CertificateReport, TlsExtras, Option<Timestamp>)> {
    let Some(material) = secrets.get_opt(name).await?.as_ref().and_then(read_tls) else {
        let report = failed(
            missing_reason,
            format!("Secret {name} with tls.crt and tls.key does not exist yet"),
        );
        return Ok((
            report,
            TlsExtras {
                ca: false,
                crl: false,
            },
            None,
        ));
    };
    let extras = TlsExtras {
        ca: material.ca_pem.is_some(),
        crl: material.crl_der.is_some(),
    };
    match byo::check(&material, hostnames, now) {
        Ok(checked) => Ok((
            CertificateReport {
                ready: true,
                reason: reasons::AS_EXPECTED,
                message: format!("Secret {name} holds a valid certificate for every hostname"),
                status: Some(cert_status(&checked.info, name)),
            },
            extras,
            Some(checked.revisit_at),
        )),
        Err(problem) => Ok((
            failed(
                reasons::INVALID_CERTIFICATE,
                format!("Secret {name}: {problem}"),
            ),
            extras,
            None,
        )),
    }
}

/// The metrics Service and ServiceMonitor, when asked for and the CRD exists. Returns whether
/// they were applied (else they are not wanted).
async fn monitoring(gateway: &SstpGateway, owner: &Owner, ctx: &Context) -> Result<bool> {
    let (Some(service), Some(monitor)) = (
        metrics_service(gateway, owner),
        service_monitor::service_monitor(gateway, owner),
    ) else {
        return Ok(false);
    };
    if !crd_exists(ctx, SERVICE_MONITOR_CRD).await? {
        debug!("ServiceMonitor asked for but its CRD is not installed");
        return Ok(false);
    }
    ctx.apply(service).await?;
    let resource = service_monitor::api_resource();
    let api =
        Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &owner.namespace, &resource);
    apply_with(&api, monitor, &resource, None, &ctx.metrics).await?;
    Ok(true)
}

/// Deletes the conditional children the spec no longer wants, if this gateway controls them.
async fn prune(gateway: &SstpGateway, owner: &Owner, ctx: &Context, monitored: bool) -> Result<()> {
    let uid = owner.reference.uid.as_str();
    let ns = owner.namespace.as_str();
    let names = &owner.names;
    for child in unwanted(&gateway.spec, monitored) {
        let (kind, name, pruned) = match child {
            Conditional::CaSecret => {
                let api = Api::<Secret>::namespaced(ctx.client.clone(), ns);
                let pruned = delete_if_controlled(&api, &names.ca, uid, &(), &ctx.metrics).await?;
                ("Secret", names.ca.clone(), pruned)
            }
            Conditional::MetricsService => {
                let name = service_monitor::metrics_service_name(&names.base);
                let api = Api::<Service>::namespaced(ctx.client.clone(), ns);
                let pruned = delete_if_controlled(&api, &name, uid, &(), &ctx.metrics).await?;
                ("Service", name, pruned)
            }
            Conditional::Certificate | Conditional::ServiceMonitor => {
                let (kind, resource) = if child == Conditional::Certificate {
                    ("Certificate", cert_manager::api_resource())
                } else {
                    ("ServiceMonitor", service_monitor::api_resource())
                };
                let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), ns, &resource);
                let pruned =
                    delete_if_controlled(&api, &names.base, uid, &resource, &ctx.metrics).await?;
                (kind, names.base.clone(), pruned)
            }
        };
        match pruned {
            Pruned::Absent => {}
            Pruned::Deleted => {
                info!(kind, name, "deleted a child that is no longer wanted");
                let note = format!("deleted {kind} {name}: {}", child.why_unwanted());
                ctx.event(gateway, "ChildDeleted", note, false).await;
            }
            Pruned::NotOurs => {
                debug!(
                    kind,
                    name, "not deleting an object this gateway does not control"
                );
            }
        }
    }
    Ok(())
}

/// The gateway's pods, by its selector labels: their status says why they cannot start.
async fn gateway_pods(ctx: &Context, owner: &Owner) -> Result<Vec<Pod>> {
    let wanted = owner.selector_labels();
    let selected = |pod: &Pod| {
        let labels = pod.labels();
        wanted
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
    };
    if let Some(pods) = ctx.cached_list(&owner.namespace, selected) {
        return Ok(pods);
    }
    let selector = wanted
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &owner.namespace)
        .list(&ListParams::default().labels(&selector))
        .await?;
    Ok(pods.items)
}

/// Reads every referenced password once: from the watch cache when it holds the Secret's data,
/// else from the API server.
async fn read_passwords(
    ctx: &Context,
    secrets: &Api<Secret>,
    users: &[SstpUser],
) -> Result<BTreeMap<(String, String), String>> {
    let namespace = secrets.namespace().unwrap_or_default();
    let mut passwords = BTreeMap::new();
    let mut cache: BTreeMap<String, Option<Secret>> = BTreeMap::new();
    for user in users {
        let PasswordSecretRef { name, key } = user.password_ref();
        if !cache.contains_key(&name) {
            let cached = ctx
                .cached::<Secret>(namespace, &name)
                .filter(|secret| secret.data.is_some());
            let secret = match cached {
                Some(secret) => Some(secret.as_ref().clone()),
                None => secrets.get_opt(&name).await?,
            };
            cache.insert(name.clone(), secret);
        }
        if let Some(password) = cache
            .get(&name)
            .and_then(Option::as_ref)
            .and_then(|s| text(s, &key))
        {
            passwords.insert((name, key), password);
        }
    }
    Ok(passwords)
}

async fn crd_exists(ctx: &Context, name: &str) -> Result<bool> {
    let api = Api::<CustomResourceDefinition>::all(ctx.client.clone());
    Ok(api.get_opt(name).await?.is_some())
}

async fn patch_status(
    ctx: &Context,
    gateway: &SstpGateway,
    status: &sstp_api::SstpGatewayStatus,
) -> Result<()> {
    let api = Api::<SstpGateway>::namespaced(
        ctx.client.clone(),
        &gateway.namespace().unwrap_or_default(),
    );
    // activeSessions belongs to the census (its own field manager): applying the count this
    // reconcile read could put back an older one.
    let status = sstp_api::SstpGatewayStatus {
        active_sessions: None,
        ..status.clone()
    };
    let patch = serde_json::json!({
        "apiVersion": "sstp.io/v1alpha1",
        "kind": "SstpGateway",
        "status": status,
    });
    api.patch_status(
        &gateway.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    ctx.metrics.wrote("SstpGateway/status");
    Ok(())
}

fn cert_status(info: &sstp_pki::CertInfo, secret: &str) -> CertificateStatus {
    CertificateStatus {
        not_after: certs::not_after_text(info),
        sha256_fingerprint: info.fingerprint_hex(),
        secret_name: secret.to_owned(),
    }
}

fn failed(reason: &'static str, message: String) -> CertificateReport {
    CertificateReport {
        ready: false,
        reason,
        message,
        status: None,
    }
}

/// Time from `now` until `next` (at least a second), else the periodic resync.
fn until(next: Option<Timestamp>, now: Timestamp) -> Duration {
    next.map_or(RESYNC, |at| {
        let seconds = at.as_second().saturating_sub(now.as_second()).max(1);
        Duration::from_secs(u64::try_from(seconds).unwrap_or(1)).min(RESYNC)
    })
}

#[cfg(test)]
mod tests;

/// The cert-manager Certificate CRD.
const CERT_MANAGER_CRD: &str = "certificates.cert-manager.io";
/// The Prometheus operator's ServiceMonitor CRD.
const SERVICE_MONITOR_CRD: &str = "servicemonitors.monitoring.coreos.com";
