//! The session census: every [`ROUND`] the leader asks each running gateway pod for its sessions
//! (`GET /sessions` on the admin port, by pod IP: [`query`]) and writes the sums into
//! `status.activeSessions` of each `SstpGateway` and each `SstpUser` ([`tally`]).
//!
//! Bounded in every direction: one request per pod per round, at most [`CONCURRENT_QUERIES`] at
//! once, each bounded by [`query::QUERY_TIMEOUT`] and [`query::MAX_ANSWER`]; at most one status
//! write per object per round, and only when its count changed (compared with the watch caches,
//! so a restarted operator that finds the same counts writes nothing). The writes use their own
//! field manager, [`FIELD_MANAGER`], which owns `activeSessions` and nothing else: the
//! reconcilers' status applies leave the field out, so a reconcile working from an older copy
//! of the object can never put back an old count.

pub mod query;
pub mod tally;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use futures::{StreamExt, future::Shared};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher,
    },
};
use sstp_api::{SstpGateway, SstpUser};
use tracing::{debug, info, warn};

use crate::{
    metrics::Metrics,
    resources::{APP_NAME, INSTANCE_LABEL, MANAGED_BY_LABEL, NAME_LABEL, ports},
};
use tally::{PodReport, Write};

/// How often the census runs: a session that starts or ends is in status within about two
/// rounds and the query timeout.
pub const ROUND: Duration = Duration::from_secs(3);
/// Pods asked at the same time.
pub const CONCURRENT_QUERIES: usize = 32;
/// The field manager of the census' status writes.
pub const FIELD_MANAGER: &str = "sstp-operator-sessions";

/// What the census reads: the controllers' caches of gateways and users, and the pods API of
/// the same scope.
#[derive(Clone)]
pub struct Sources {
    /// Client for the status writes.
    pub client: Client,
    /// The gateway controller's cache.
    pub gateways: Store<SstpGateway>,
    /// The user controller's cache.
    pub users: Store<SstpUser>,
    /// Pods in the scope (watched here by the gateway name label).
    pub pods: Api<Pod>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("gateways", &self.gateways.state().len())
            .field("users", &self.users.state().len())
            .finish_non_exhaustive()
    }
}

/// Runs the census until `stop`.
pub async fn run(
    sources: Sources,
    metrics: Metrics,
    stop: Shared<futures::future::BoxFuture<'static, ()>>,
) {
    let (pods, writer) = reflector::store();
    let config = watcher::Config::default()
        .any_semantic()
        .labels(&format!("{NAME_LABEL}={APP_NAME}"));
    let watch = watcher(sources.pods.clone(), config)
        .backoff(sstp_api::watch_backoff::WatchBackoff::default())
        .reflect(writer)
        .for_each(|event| async move {
            if let Err(err) = event {
                debug!(error = %err, "census pod watch");
            }
        });
    let mut census = Census {
        sources,
        metrics,
        pods,
        answers: HashMap::new(),
        failing: HashSet::new(),
    };
    let rounds = async move {
        let _ = census.pods.wait_until_ready().await;
        let _ = census.sources.gateways.wait_until_ready().await;
        let _ = census.sources.users.wait_until_ready().await;
        info!(round = ?ROUND, "session census running");
        let mut ticker = tokio::time::interval(ROUND);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            census.round().await;
        }
    };
    tokio::select! {
        () = watch => {}
        () = rounds => {}
        () = stop => {}
    }
}

struct Census {
    sources: Sources,
    metrics: Metrics,
    pods: Store<Pod>,
    /// Each pod's last answer, by uid.
    answers: HashMap<String, Vec<Option<String>>>,
    /// Pods whose last query failed (warned once per run of failures).
    failing: HashSet<String>,
}

impl Census {
    async fn round(&mut self) {
        let pods: Vec<(Arc<Pod>, SocketAddr)> = self
            .pods
            .state()
            .into_iter()
            .filter_map(|pod| {
                let admin = admin_address(&pod)?;
                Some((pod, admin))
            })
            .collect();
        // Owned, collected queries: a stream borrowing `pods` through a closure would make the
        // round's future Send only for some lifetimes, and tokio::spawn needs all.
        let queries: Vec<_> = pods
            .iter()
            .cloned()
            .map(|(pod, admin)| async move { (pod, query::sessions(admin).await) })
            .collect();
        let answers: Vec<_> = futures::stream::iter(queries)
            .buffer_unordered(CONCURRENT_QUERIES)
            .collect()
            .await;
        let mut reports = Vec::with_capacity(answers.len());
        for (pod, answer) in answers {
            let (Some(uid), Some(gateway)) = (pod.uid(), pod.labels().get(INSTANCE_LABEL)) else {
                continue;
            };
            let sessions = match answer {
                Ok(sessions) => {
                    self.failing.remove(&uid);
                    self.answers.insert(uid, sessions.clone());
                    Some(sessions)
                }
                Err(err) => {
                    self.metrics.session_query_failed();
                    if self.failing.insert(uid.clone()) {
                        warn!(
                            namespace = pod.namespace(),
                            pod = pod.name_any(),
                            error = %err,
                            "cannot read the pod's sessions; its last count stands"
                        );
                    }
                    self.answers
                        .get(&uid)
                        .cloned()
                        .or_else(|| (!is_ready(&pod)).then(Vec::new))
                }
            };
            reports.push(PodReport {
                namespace: pod.namespace().unwrap_or_default(),
                gateway: gateway.clone(),
                sessions,
            });
        }
        let live: HashSet<String> = pods.iter().filter_map(|(pod, _)| pod.uid()).collect();
        self.answers.retain(|uid, _| live.contains(uid));
        self.failing.retain(|uid| live.contains(uid));

        let gateways = self.sources.gateways.state();
        let users = self.sources.users.state();
        let writes = tally::tally(
            &gateways.iter().map(AsRef::as_ref).collect::<Vec<_>>(),
            &users.iter().map(AsRef::as_ref).collect::<Vec<_>>(),
            &reports,
        );
        for write in &writes.gateways {
            self.apply::<SstpGateway>(write).await;
        }
        for write in &writes.users {
            self.apply::<SstpUser>(write).await;
        }
        self.metrics.census_round();
    }

    /// Sets (or, with no count, removes) `status.activeSessions` of one object; a failure is
    /// logged and retried by the next round, which finds the same difference.
    async fn apply<K>(&self, write: &Write)
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let kind = K::kind(&());
        let status = match write.count {
            Some(count) => serde_json::json!({ "activeSessions": count }),
            None => serde_json::json!({}),
        };
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": kind,
            "status": status,
        });
        let api = Api::<K>::namespaced(self.sources.client.clone(), &write.namespace);
        match api
            .patch_status(
                &write.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            Ok(_) => self.metrics.wrote(&format!("{kind}/status")),
            Err(err) => warn!(
                namespace = write.namespace,
                object = write.name,
                kind = %kind,
                error = %err,
                "cannot write the session count"
            ),
        }
    }
}

/// Where a running gateway pod's admin port is, for pods this operator manages.
fn admin_address(pod: &Pod) -> Option<SocketAddr> {
    let labels = pod.labels();
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(crate::FIELD_MANAGER) {
        return None;
    }
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let ip = status.pod_ip.as_deref()?.parse().ok()?;
    let port = u16::try_from(ports::ADMIN).ok()?;
    Some(SocketAddr::new(ip, port))
}

/// Whether the pod's Ready condition is true (its readiness probe reached the admin port).
fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|condition| condition.type_ == "Ready" && condition.status == "True")
}
