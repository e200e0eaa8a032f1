//! What the gateway controller's watches cache, for its reconciles to read from memory instead of
//! the API server (kube's reflector stores; linkerd's index fed by its watches).
//!
//! Each store is filled by the reflector of a watch that also wakes the gateways: a reflector
//! applies an event to its store before passing it on, so the change that woke a reconcile is in
//! the store when the reconcile reads it. A store can still lag a write this operator made a
//! moment earlier (its own apply, before the watch delivers it back), so each read trusts the
//! cache only where a stale answer costs nothing:
//! - **Children** (apply): a cached object carrying the hash of what is to be applied is taken as
//!   stored, as the GET's answer would be; any other answer (not cached, an older hash) falls
//!   back to the GET, so a lagging cache never causes a write the API server would not.
//! - **Passwords**: a Secret the cache holds with data is read from it; a later change to it wakes
//!   the gateway again once the store has it. One the cache lacks is read from the API server.
//! - **Pods**: once the pod watch has listed them, the gateway's pods come from its store.
//!
//! Read from the API server every time: the built-in CA and the served certificate (`<gw>-ca`,
//! `<gw>-tls`) and the TLS Secrets others write. A cache lagging the CA Secret a previous
//! reconcile wrote would make this one issue a second CA and so strand every client that
//! imported the first. The CRD checks too (cluster-scoped; the operator does not watch CRDs).
//!
//! Memory: the children's watches select the operator's managed-by label, so only its own
//! objects are held (a child someone strips of that label leaves the watch: its later changes
//! are seen at the periodic resync); the Secret store keeps the `data` only of small `Opaque`
//! Secrets (at most [`CACHED_SECRET_DATA`] bytes: a password Secret) and metadata alone of every
//! other (Helm releases, tokens, other applications' Secrets, the operator's own users document
//! and CA), and no store keeps managedFields. A stale password can reach one users document
//! written for another reason; the Secret's own event then wakes the gateway again.

use std::fmt::Debug;

use futures::{FutureExt, Stream};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount},
    policy::v1::PodDisruptionBudget,
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Resource,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store, reflector, store::Writer},
        watcher::{self, watcher},
    },
};
use serde::de::DeserializeOwned;
use sstp_api::{SstpUser, watch_backoff::WatchBackoff};
use std::sync::Arc;

/// A kind some [`Caches`] store holds.
pub trait Cached:
    Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + 'static
{
    /// Its store in `caches`.
    fn store(caches: &Caches) -> &Store<Self>;
}

/// Declares the stores, their writers and which kind each holds.
macro_rules! caches {
    ($($field:ident: $kind:ty),* $(,)?) => {
        /// The gateway controller's stores; cloning shares them.
        #[derive(Clone)]
        pub struct Caches {
            $(
                #[doc = concat!("`", stringify!($kind), "` objects.")]
                pub $field: Store<$kind>,
            )*
        }

        /// The writing ends of [`Caches`], for the reflectors.
        pub struct Writers {
            $(
                #[doc = concat!("`", stringify!($kind), "` objects.")]
                pub $field: Writer<$kind>,
            )*
        }

        impl Caches {
            /// Empty stores and their writers.
            pub fn new() -> (Self, Writers) {
                $(let $field = reflector::store::<$kind>();)*
                (Self { $($field: $field.0,)* }, Writers { $($field: $field.1,)* })
            }
        }

        impl std::fmt::Debug for Caches {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // How many objects each store holds: never their content.
                f.debug_struct("Caches")
                    $(.field(stringify!($field), &self.$field.len()))*
                    .finish()
            }
        }

        impl std::fmt::Debug for Writers {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("Writers").finish_non_exhaustive()
            }
        }

        $(
            impl Cached for $kind {
                fn store(caches: &Caches) -> &Store<Self> {
                    &caches.$field
                }
            }
        )*
    };
}

caches! {
    users: SstpUser,
    secrets: Secret,
    pods: Pod,
    config_maps: ConfigMap,
    service_accounts: ServiceAccount,
    roles: Role,
    role_bindings: RoleBinding,
    deployments: Deployment,
    services: Service,
    pod_disruption_budgets: PodDisruptionBudget,
}

impl Caches {
    /// `namespace/name` of kind `K`, if the store holds it.
    pub fn get<K: Cached>(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        K::store(self).get(&ObjectRef::new(name).within(namespace))
    }
}

/// Whether `store` has had its first complete list (without waiting for it).
pub fn listed<K>(store: &Store<K>) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    matches!(store.wait_until_ready().now_or_never(), Some(Ok(())))
}

/// A watch of `api` whose every object goes through `trim` into `writer`'s store before the
/// stream passes it on (the object that wakes a reconcile is in the store), retrying at most a
/// second apart.
pub fn watch<K>(
    api: Api<K>,
    config: &watcher::Config,
    writer: Writer<K>,
    trim: fn(&mut K),
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    reflector(
        writer,
        watcher(api, config.clone())
            .modify(trim)
            .backoff(WatchBackoff::default()),
    )
    .touched_objects()
}

/// Trims an object for a store: managedFields are never read.
pub fn trimmed<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// [`trimmed`] for Secrets: the data of any but a small `Opaque` one (a Helm release can be a
/// megabyte, and other applications' Secrets are none of the operator's business) is dropped, so
/// a read of it falls back to the API server.
pub fn trimmed_secret(secret: &mut Secret) {
    trimmed(secret);
    let opaque = secret.type_.as_deref().unwrap_or(OPAQUE) == OPAQUE;
    let size: usize = secret
        .data
        .iter()
        .flatten()
        .map(|(key, value)| key.len() + value.0.len())
        .sum();
    if !opaque || size > CACHED_SECRET_DATA {
        secret.data = None;
        secret.string_data = None;
    }
}

/// The most data a cached Secret keeps: a password Secret's few keys fit many times over.
pub const CACHED_SECRET_DATA: usize = 1024;

/// The name and value of the label every child carries: what the children's watches select.
pub fn managed_by_selector() -> String {
    format!(
        "{}={}",
        crate::resources::MANAGED_BY_LABEL,
        crate::FIELD_MANAGER
    )
}

/// The default Secret type.
const OPAQUE: &str = "Opaque";

#[cfg(test)]
mod tests;
