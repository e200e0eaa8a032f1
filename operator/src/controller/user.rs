//! The `SstpUser` reconciler: a generated password when none is referenced, and status (is the
//! user usable, which gateways accept it). The user's spec is never written.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::Time};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::controller::Action,
};
use rand::{RngExt, distr::Alphanumeric};
use sstp_api::{
    SstpGateway, SstpUser, SstpUserStatus,
    condition::{condition, reasons, set_condition, types},
};
use tracing::{info, instrument};

use super::{Context, RESYNC};
use crate::{
    Error, FIELD_MANAGER, Result,
    resources::{
        secrets::{credentials_secret, text},
        users::selects,
    },
};

/// Name of this controller in metrics.
pub const CONTROLLER: &str = "user";

/// Reconciles one user.
#[instrument(skip_all, fields(namespace = user.namespace(), user = user.name_any()))]
pub async fn reconcile(user: Arc<SstpUser>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started(CONTROLLER);
    if user.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = user.namespace().ok_or(Error::MissingField("namespace"))?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let generated = user.spec.password_secret_ref.is_none();
    if generated {
        ensure_credentials(&user, &ctx, &secrets, &ns).await?;
    }
    let reference = user.password_ref();
    let readable = secrets
        .get_opt(&reference.name)
        .await?
        .is_some_and(|secret| text(&secret, &reference.key).is_some_and(|p| !p.is_empty()));
    let now = Timestamp::now();
    let expires_at = user.spec.expires_at.as_ref().map(|t| t.0);
    let expired = expires_at.is_some_and(|at| at <= now);
    let (ready, reason, message) = if user.spec.disabled {
        (false, reasons::DISABLED, "spec.disabled is true".to_owned())
    } else if expired {
        (
            false,
            reasons::EXPIRED,
            "spec.expiresAt has passed".to_owned(),
        )
    } else if !readable {
        (
            false,
            reasons::PASSWORD_MISSING,
            format!(
                "Secret {} has no non-empty key {}",
                reference.name, reference.key
            ),
        )
    } else {
        (
            true,
            reasons::ACTIVE,
            "the password is readable and the user may log in".to_owned(),
        )
    };

    let gateways = if ready {
        let mut names: Vec<String> = Api::<SstpGateway>::namespaced(ctx.client.clone(), &ns)
            .list(&Default::default())
            .await?
            .items
            .iter()
            .filter(|gw| selects(gw.spec.users.selector.as_ref(), &user))
            .map(ResourceExt::name_any)
            .collect();
        names.sort();
        names
    } else {
        Vec::new()
    };
    let old = user.status.clone().unwrap_or_default();
    let mut conditions = old.conditions;
    set_condition(
        &mut conditions,
        condition(
            types::READY,
            ready,
            reason,
            message,
            user.metadata.generation,
            Time(now),
        ),
    );
    let status = SstpUserStatus {
        observed_generation: user.metadata.generation,
        conditions,
        gateways,
        credentials_secret: generated.then(|| user.credentials_secret_name()),
        // The census' field: kept for the comparison, never applied from here.
        active_sessions: old.active_sessions,
    };
    if user.status.as_ref() != Some(&status) {
        let api = Api::<SstpUser>::namespaced(ctx.client.clone(), &ns);
        let status = SstpUserStatus {
            active_sessions: None,
            ..status
        };
        let patch = serde_json::json!({"apiVersion": "sstp.io/v1alpha1", "kind": "SstpUser", "status": status});
        api.patch_status(
            &user.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        ctx.metrics.wrote("SstpUser/status");
    }
    let requeue = expires_at.filter(|at| *at > now).map_or(RESYNC, |at| {
        std::time::Duration::from_secs(
            u64::try_from(at.as_second() - now.as_second())
                .unwrap_or(1)
                .max(1),
        )
        .min(RESYNC)
    });
    Ok(Action::requeue(requeue))
}

/// Creates `<user>-credentials` with a fresh password if it does not exist. An existing one is
/// never replaced: the password is the user's until they or an admin change it.
async fn ensure_credentials(
    user: &SstpUser,
    ctx: &Context,
    secrets: &Api<Secret>,
    ns: &str,
) -> Result<()> {
    let name = user.credentials_secret_name();
    if secrets.get_opt(&name).await?.is_some() {
        return Ok(());
    }
    let owner = user
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    let secret = credentials_secret(ns, &name, owner, &generate_password());
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match secrets.create(&params, &secret).await {
        Ok(_) => {
            ctx.metrics.wrote("Secret");
            info!(secret = name, "generated a password");
            ctx.event(
                user,
                "CredentialsGenerated",
                format!("generated a password into Secret {name}"),
                false,
            )
            .await;
            Ok(())
        }
        // Someone (another reconcile, a person) made it meanwhile: theirs stands.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// A 24-character alphanumeric password: about 143 bits, and nothing a Windows password box or
/// a shell would mangle.
pub fn generate_password() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(GENERATED_PASSWORD_LEN)
        .map(char::from)
        .collect()
}

/// Length of generated passwords.
const GENERATED_PASSWORD_LEN: usize = 24;

#[cfg(test)]
mod tests;
