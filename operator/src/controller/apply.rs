//! Server-side apply with one field manager, skipped when nothing changed.
//!
//! Each applied object carries an annotation with the SHA-256 of what was applied. Before
//! applying, the stored object's annotation is compared with the hash of the new desired
//! object; equal means the apiserver already has exactly this, so nothing is sent. A restarted
//! operator therefore makes no writes, and a change anyone else makes to a field we own is
//! still put right at the next change or when the hash differs.

use std::fmt::Debug;

use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

use crate::{FIELD_MANAGER, Result, metrics::Metrics};

/// Annotation holding the hash of the applied object.
pub const APPLIED_HASH_ANNOTATION: &str = "sstp.io/applied-hash";

/// Applies `desired` unless the stored object already carries its hash. `cached` is the object as
/// a watch cache holds it: carrying that hash, it stands for the stored one and nothing is read;
/// otherwise (absent, or a cache lagging a change) the stored object is read. Returns the stored
/// object and whether a write happened.
pub async fn apply_with<K>(
    api: &Api<K>,
    mut desired: K,
    dynamic_type: &K::DynamicType,
    cached: Option<&K>,
    metrics: &Metrics,
) -> Result<(K, bool)>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = desired.name_any();
    let hash = hash_of(&desired)?;
    let carries_hash =
        |object: &K| object.annotations().get(APPLIED_HASH_ANNOTATION) == Some(&hash);
    if let Some(cached) = cached.filter(|cached| carries_hash(cached)) {
        return Ok((cached.clone(), false));
    }
    if let Some(existing) = api.get_opt(&name).await?
        && carries_hash(&existing)
    {
        return Ok((existing, false));
    }
    desired
        .annotations_mut()
        .insert(APPLIED_HASH_ANNOTATION.to_owned(), hash);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let stored = api.patch(&name, &params, &Patch::Apply(&desired)).await?;
    metrics.wrote(&K::kind(dynamic_type));
    Ok((stored, true))
}

/// Hex SHA-256 of the object's JSON (without the hash annotation itself).
pub fn hash_of<K: Serialize>(object: &K) -> Result<String> {
    let json = serde_json::to_vec(object)?;
    Ok(Sha256::digest(&json)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
