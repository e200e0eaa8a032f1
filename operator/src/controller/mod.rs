//! The two reconcilers and what they share: the context, server-side apply with
//! compare-before-write, and events.

use std::{sync::Arc, time::Duration};

use cache::{Cached, Caches};
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
    },
};
use sstp_api::{SstpUser, gateway::ImagePullPolicy};
use tracing::warn;

use crate::metrics::Metrics;

pub mod apply;
pub mod cache;
pub mod gateway;
pub mod pod_health;
pub mod prune;
#[cfg(test)]
mod scripted_api;
pub mod status;
pub mod triggers;
pub mod user;

/// Every controller's name, as the metrics label it: each series starts at zero with it.
pub const CONTROLLERS: [&str; 2] = [gateway::CONTROLLER, user::CONTROLLER];

/// What every reconcile gets.
#[derive(Clone)]
pub struct Context {
    /// API client.
    pub client: Client,
    /// Operator metrics.
    pub metrics: Metrics,
    /// Event recorder.
    pub recorder: Recorder,
    /// The gateway image when a gateway does not name one.
    pub gateway_image: String,
    /// Its pull policy when a gateway sets none (`None`: Kubernetes' default).
    pub gateway_pull_policy: Option<ImagePullPolicy>,
    /// What the gateway controller's watches cache (`cache.rs` says which reads trust it);
    /// `None` reads everything from the API server (a reconcile run without those watches).
    caches: Option<Caches>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("gateway_image", &self.gateway_image)
            .field("gateway_pull_policy", &self.gateway_pull_policy)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context whose events are reported as `sstp-operator` from `instance`.
    pub fn new(
        client: Client,
        metrics: Metrics,
        gateway_image: String,
        gateway_pull_policy: Option<ImagePullPolicy>,
        instance: String,
    ) -> Self {
        let reporter = Reporter {
            controller: crate::FIELD_MANAGER.to_owned(),
            instance: Some(instance),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            gateway_image,
            gateway_pull_policy,
            caches: None,
        }
    }

    /// This context reading from `caches`, filled by watches whose every event reaches the
    /// store before it wakes a reconcile.
    #[must_use]
    pub fn with_caches(self, caches: Caches) -> Self {
        Self {
            caches: Some(caches),
            ..self
        }
    }

    /// Every SstpUser of `namespace`: from the watch cache once it has listed them all, else
    /// from the API server.
    pub async fn users_in(&self, namespace: &str) -> crate::Result<Vec<SstpUser>> {
        if let Some(caches) = &self.caches
            // Only before the first complete list (at start) does this wait: an empty cache
            // must never compile an empty users document. It fails only at shutdown.
            && caches.users.wait_until_ready().await.is_ok()
        {
            let mut users = self
                .cached_list::<SstpUser>(namespace, |_| true)
                .unwrap_or_default();
            // In the API server's list order (by name), not the cache's hash order, so the
            // reads that follow come in the same order every time.
            users.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            return Ok(users);
        }
        let api = Api::<SstpUser>::namespaced(self.client.clone(), namespace);
        Ok(api.list(&Default::default()).await?.items)
    }

    /// `namespace/name` of kind `K` as the watch cache holds it (`None` without caches).
    pub fn cached<K: Cached>(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.caches.as_ref()?.get(namespace, name)
    }

    /// The objects of kind `K` in `namespace` that `keep` takes, once its watch has listed them
    /// all (`None` before that, and without caches).
    pub fn cached_list<K: Cached>(
        &self,
        namespace: &str,
        keep: impl Fn(&K) -> bool,
    ) -> Option<Vec<K>> {
        let store = K::store(self.caches.as_ref()?);
        cache::listed(store).then(|| {
            store
                .state()
                .iter()
                .filter(|object| object.meta().namespace.as_deref() == Some(namespace))
                .filter(|object| keep(object))
                .map(|object| object.as_ref().clone())
                .collect()
        })
    }

    /// Applies `desired` in its namespace (`apply.rs`): a cached child that already carries
    /// what is to be applied costs no request.
    pub async fn apply<K>(&self, desired: K) -> crate::Result<(K, bool)>
    where
        K: Cached + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
    {
        let namespace = desired.meta().namespace.clone().unwrap_or_default();
        let cached = self.cached::<K>(&namespace, &desired.name_any());
        let api = Api::<K>::namespaced(self.client.clone(), &namespace);
        apply::apply_with(&api, desired, &(), cached.as_deref(), &self.metrics).await
    }

    /// Publishes a Normal event about `object`; a failure to publish is logged, not fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        reason: &str,
        note: String,
        warning: bool,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(note),
            action: reason.to_owned(),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&event, &object.object_ref(&())).await {
            warn!(error = %err, "could not publish an event");
        }
    }
}

/// Requeue policy after an error: quick at first, backing off to a ceiling, keyed by how many
/// errors in a row the object had (tracked by the caller).
pub fn error_backoff(consecutive: u32) -> Action {
    let seconds = ERROR_BACKOFF_FIRST
        .as_secs()
        .saturating_mul(1u64 << consecutive.min(8))
        .min(ERROR_BACKOFF_MAX.as_secs());
    Action::requeue(Duration::from_secs(seconds))
}

/// Consecutive failed reconciles per object (`namespace/name`), for [`error_backoff`]. Cloning
/// shares it. An object's entry goes when it reconciles, and the entries of objects that are gone
/// go whenever any reconcile ends: a deleted object gets no last reconcile that would clear it, so
/// without that an object deleted while failing would stay here for good.
#[derive(Debug, Clone, Default)]
pub struct ErrorCounts(Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>);

impl ErrorCounts {
    /// The entry name of `object`.
    pub fn key(object: &impl kube::ResourceExt) -> String {
        format!(
            "{}/{}",
            object.namespace().unwrap_or_default(),
            object.name_any()
        )
    }

    /// Records a failure of `key` and returns how many came before it in a row; forgets every
    /// other entry `live` says is gone.
    pub fn failed(&self, key: String, live: impl Fn(&str) -> bool) -> u32 {
        let mut counts = self.lock();
        counts.retain(|other, _| *other == key || live(other));
        let entry = counts.entry(key).or_insert(0);
        *entry = entry.saturating_add(1);
        *entry - 1
    }

    /// Forgets `key` after a successful reconcile, and every entry `live` says is gone.
    pub fn succeeded(&self, key: &str, live: impl Fn(&str) -> bool) {
        self.lock().retain(|other, _| other != key && live(other));
    }

    /// How many objects have failures recorded.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no object has failures recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, u32>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// First retry after an error.
const ERROR_BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between retries.
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Periodic resync of healthy objects (catches anything a watch missed).
pub const RESYNC: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_backoff_doubles_up_to_a_ceiling() {
        assert_eq!(error_backoff(0), Action::requeue(Duration::from_secs(1)));
        assert_eq!(error_backoff(3), Action::requeue(Duration::from_secs(8)));
        assert_eq!(error_backoff(30), Action::requeue(Duration::from_secs(256)));
        let counts = ErrorCounts::default();
        let all = |_: &str| true;
        assert_eq!(counts.failed("ns/a".into(), all), 0);
        assert_eq!(counts.failed("ns/a".into(), all), 1);
        counts.succeeded("ns/a", all);
        assert_eq!(counts.failed("ns/a".into(), all), 0);
    }

    #[test]
    fn an_object_deleted_while_failing_is_forgotten_at_the_next_reconcile_of_any_object() {
        let counts = ErrorCounts::default();
        let all = |_: &str| true;
        counts.failed("ns/deleted".into(), all);
        counts.failed("ns/deleted".into(), all);
        counts.failed("ns/failing".into(), all);
        assert_eq!(counts.len(), 2);
        // ns/deleted is gone from the store; another object's success prunes it.
        let live = |key: &str| key != "ns/deleted";
        counts.succeeded("ns/other", live);
        assert_eq!(counts.len(), 1);
        // ns/failing still counts on, and a failure prunes too.
        assert_eq!(counts.failed("ns/failing".into(), live), 1);
        counts.failed("ns/gone-too".into(), all);
        assert_eq!(
            counts.failed("ns/failing".into(), |key: &str| key == "ns/failing"),
            2
        );
        assert_eq!(counts.len(), 1);
        counts.succeeded("ns/failing", live);
        assert!(counts.is_empty());
    }
}
