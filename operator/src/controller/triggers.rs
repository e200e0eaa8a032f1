//! Which gateways a change to something they do not own concerns: the controller maps every
//! watched Secret and pod through these, so a change wakes only the gateways it affects.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{Resource, ResourceExt, runtime::reflector::ObjectRef};
use sstp_api::{SstpGateway, SstpUser};

use crate::resources::{INSTANCE_LABEL, MANAGED_BY_LABEL, Names, users::selects};

/// The gateways a change to `secret` concerns, of `gateways` (the gateway cache) given `users`
/// (the SstpUser cache):
/// - a password Secret: each gateway of its namespace whose selector takes a user naming it;
/// - a bring-your-own TLS Secret (`tls.secretName`): the gateway naming it;
/// - the `<gateway>-tls` Secret cert-manager writes (`tls.certManager`): that gateway.
///
/// - a Secret a gateway controls (`<gw>-users`, `<gw>-tls`, `<gw>-ca`): that gateway, as `owns`
///   maps its other children.
///
/// Every other Secret of the namespace (service-account tokens, Helm releases...) wakes none.
pub fn gateways_for_secret(
    secret: &Secret,
    gateways: &[Arc<SstpGateway>],
    users: &[Arc<SstpUser>],
) -> Vec<ObjectRef<SstpGateway>> {
    if let Some(owner) = controlling_gateway(secret) {
        return vec![owner];
    }
    let namespace = secret.namespace();
    let name = secret.name_any();
    let users: Vec<&SstpUser> = users
        .iter()
        .map(AsRef::as_ref)
        .filter(|user| user.namespace() == namespace && user.password_ref().name == name)
        .collect();
    gateways
        .iter()
        .filter(|gw| gw.namespace() == namespace)
        .filter(|gw| {
            let tls = &gw.spec.tls;
            let byo = tls.secret_name.as_deref() == Some(name.as_str());
            let issued = tls.cert_manager.is_some() && Names::of(&gw.name_any()).tls == name;
            let selector = gw.spec.users.selector.as_ref();
            byo || issued || users.iter().any(|user| selects(selector, user))
        })
        .map(|gw| ObjectRef::from_obj(gw.as_ref()))
        .collect()
}

/// The gateway that controls `object` (its controller owner reference), as `owns` maps a child.
pub fn controlling_gateway<K: Resource>(object: &K) -> Option<ObjectRef<SstpGateway>> {
    let owner = object
        .owner_references()
        .iter()
        .find(|owner| owner.controller == Some(true))?;
    let ours = owner.kind == "SstpGateway" && owner.api_version.starts_with("sstp.io/");
    ours.then(|| ObjectRef::new(&owner.name).within(&object.namespace().unwrap_or_default()))
}

/// The gateway a pod belongs to, by its instance label.
pub fn gateway_of_pod(pod: &Pod) -> Option<ObjectRef<SstpGateway>> {
    let labels = pod.labels();
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(crate::FIELD_MANAGER) {
        return None;
    }
    let name = labels.get(INSTANCE_LABEL)?;
    Some(ObjectRef::new(name).within(&pod.namespace()?))
}

#[cfg(test)]
mod tests;
