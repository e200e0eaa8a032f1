//! Everything together: admin server, leader election, both controllers and the session census,
//! graceful shutdown.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use futures::{
    FutureExt, StreamExt,
    future::{BoxFuture, Shared},
};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount},
    policy::v1::PodDisruptionBudget,
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        Controller,
        controller::Action,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use sstp_api::{SstpGateway, SstpUser, gateway::ImagePullPolicy, watch_backoff::WatchBackoff};
use tracing::{info, warn};

use crate::{
    admin::{self, Readiness},
    census,
    controller::{
        self, Context, ErrorCounts,
        cache::{self, Caches},
        gateway, triggers, user,
    },
    leader::{Election, LeaseSettings},
    metrics::Metrics,
    resources::{APP_NAME, NAME_LABEL},
};

/// How the operator runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Image of gateway pods when a gateway does not name one.
    pub gateway_image: String,
    /// Pull policy of that image when a gateway sets none (`None`: Kubernetes' default).
    pub gateway_pull_policy: Option<ImagePullPolicy>,
    /// Leader election.
    pub lease: LeaseSettings,
    /// Where `/metrics`, `/healthz`, `/readyz` are served (`None`: not at all).
    pub admin_address: Option<SocketAddr>,
    /// Watch only these namespaces (empty: all namespaces).
    pub watch_namespaces: Vec<String>,
}

/// Why [`run`] ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The lease could not be created or read.
    #[error("leader election failed")]
    Lease(#[source] kube_lease_manager::LeaseManagerError),
    /// Another replica took the lease; this one stopped its controllers and must restart.
    #[error("lost the leader lease")]
    LostLease,
    /// The admin server could not bind.
    #[error("admin server on {address}")]
    Admin {
        /// The address.
        address: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Runs the operator until `shutdown` completes (then releases the lease and returns `Ok`) or
/// leadership is lost (returns [`RunError::LostLease`]).
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let shutdown = shutdown.boxed().shared();
    let readiness = Readiness::default();
    let admin = match settings.admin_address {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| RunError::Admin { address, source })?;
            drop(listener);
            let serve = admin::serve(
                address,
                metrics.clone(),
                readiness.clone(),
                shutdown.clone(),
            );
            Some(tokio::spawn(serve))
        }
        None => None,
    };
    let mut election = Election::start(client.clone(), &settings.lease)
        .await
        .map_err(RunError::Lease)?;
    readiness.set(true);
    info!(
        identity = settings.lease.identity,
        "waiting for the leader lease"
    );
    let won = tokio::select! {
        won = election.won() => won,
        () = shutdown.clone() => false,
    };
    let mut lost = false;
    if won {
        metrics.set_leader(true);
        info!("leading: controllers start");
        let ctx = Arc::new(Context::new(
            client.clone(),
            metrics.clone(),
            settings.gateway_image.clone(),
            settings.gateway_pull_policy,
            settings.lease.identity.clone(),
        ));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stop = async move {
            let mut stop_rx = stop_rx;
            let _ = stop_rx.wait_for(|stop| *stop).await;
        }
        .boxed()
        .shared();
        let controllers = run_controllers(
            Scope::all_of(&client, &settings.watch_namespaces),
            ctx,
            stop,
        );
        tokio::pin!(controllers);
        tokio::select! {
            () = &mut controllers => {}
            () = shutdown.clone() => {
                let _ = stop_tx.send(true);
                drain(controllers).await;
            }
            () = election.lost() => {
                lost = true;
                warn!("lost the leader lease; stopping the controllers");
                let _ = stop_tx.send(true);
                drain(controllers).await;
            }
        }
        metrics.set_leader(false);
    }
    if tokio::time::timeout(LEASE_RELEASE_LIMIT, election.release())
        .await
        .is_err()
    {
        warn!(
            limit = ?LEASE_RELEASE_LIMIT,
            "the lease was not released in time; it expires on its own"
        );
    }
    if let Some(admin) = admin {
        admin.abort();
    }
    if lost {
        Err(RunError::LostLease)
    } else {
        Ok(())
    }
}

type Stop = Shared<futures::future::BoxFuture<'static, ()>>;

/// How long in-flight reconciles may run once the controllers are told to stop. Stopping is
/// bounded so that a reconcile stuck on a slow apiserver call cannot keep this replica from
/// releasing the Lease within the pod's termination grace period (30 s by default); whatever
/// was abandoned is picked up again by the next leader, since reconciles are idempotent.
const CONTROLLER_DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// How long releasing the Lease may take before this replica leaves it to expire.
const LEASE_RELEASE_LIMIT: Duration = Duration::from_secs(5);

/// Waits for the stopped controllers to finish their in-flight reconciles, at most
/// [`CONTROLLER_DRAIN_LIMIT`].
async fn drain(controllers: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(CONTROLLER_DRAIN_LIMIT, controllers)
        .await
        .is_err()
    {
        warn!(
            limit = ?CONTROLLER_DRAIN_LIMIT,
            "reconciles still running after the stop; abandoning them"
        );
    }
}

/// Where the controllers watch.
#[derive(Clone)]
struct Scope {
    client: Client,
    namespace: Option<String>,
}

impl Scope {
    /// One scope per listed namespace, or one for all namespaces when none is listed.
    fn all_of(client: &Client, namespaces: &[String]) -> Vec<Self> {
        scope_namespaces(namespaces)
            .into_iter()
            .map(|namespace| Self {
                client: client.clone(),
                namespace,
            })
            .collect()
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
    {
        match &self.namespace {
            Some(namespace) => Api::namespaced(self.client.clone(), namespace),
            None => Api::all(self.client.clone()),
        }
    }
}

/// The namespaces to run controllers for: each listed one once (empty names ignored), or `None`
/// (all namespaces) when none is listed. Watching a namespace twice would reconcile it twice.
fn scope_namespaces(namespaces: &[String]) -> Vec<Option<String>> {
    let mut listed: Vec<String> = namespaces
        .iter()
        .filter(|namespace| !namespace.is_empty())
        .cloned()
        .collect();
    listed.sort();
    listed.dedup();
    if listed.is_empty() {
        vec![None]
    } else {
        listed.into_iter().map(Some).collect()
    }
}

/// Both controllers and the session census for every scope until `stop`.
///
/// Several namespaces run one controller pair per namespace rather than one pair fed by merged
/// per-namespace watcher streams (`Controller::for_stream` + `owns_stream`/`watches_stream` over
/// hand-built reflectors): a kube `Api` is one namespace or all, and everything a reconcile
/// relates (a gateway, its users, their password Secrets, its children) lives in one namespace,
/// so per-namespace controllers need no cross-namespace store and each watch stays a plain
/// namespaced `Api` (no cluster-wide list/watch, Secrets included). The merged form would need
/// a reflector store per resource and namespace plus stream plumbing for the same result.
/// The Context (client, metrics, recorder), the leader election and the stop signal are shared;
/// each namespace's queue is independent, so one namespace's backlog never delays another.
async fn run_controllers(scopes: Vec<Scope>, ctx: Arc<Context>, stop: Stop) {
    let pairs = scopes.into_iter().map(|scope| {
        info!(
            namespace = scope.namespace.as_deref().unwrap_or("*"),
            "watching"
        );
        let config = watcher::Config::default().any_semantic();
        // Every watch retries at most a second apart, so the controllers are back right after
        // an API server outage (kube's default waits grow to 30 s).
        let gateways = Controller::new(scope.api::<SstpGateway>(), config.clone())
            .trigger_backoff(WatchBackoff::default());
        let users = Controller::new(scope.api::<SstpUser>(), config)
            .trigger_backoff(WatchBackoff::default());
        let census = census::run(
            census::Sources {
                client: scope.client.clone(),
                gateways: gateways.store(),
                users: users.store(),
                pods: scope.api::<Pod>(),
            },
            ctx.metrics.clone(),
            stop.clone(),
        );
        let gateways = gateway_controller(gateways, scope.clone(), ctx.clone(), stop.clone());
        let users = user_controller(users, scope, ctx.clone(), stop.clone());
        async move {
            futures::join!(gateways, users, census);
        }
    });
    futures::future::join_all(pairs).await;
}

async fn gateway_controller(
    controller: Controller<SstpGateway>,
    scope: Scope,
    ctx: Arc<Context>,
    stop: Stop,
) {
    let config = watcher::Config::default().any_semantic();
    // Only the operator's own children: neither the watches nor their stores carry anyone
    // else's Deployments, Services...
    let children = config.clone().labels(&cache::managed_by_selector());
    let gateways = controller.store();
    let live = gateways.clone();
    // Every watch of this controller feeds a store the reconcile reads (`controller/cache.rs`):
    // each change is in its store before it wakes a gateway, deletions included.
    let (caches, writers) = Caches::new();
    let users = caches.users.clone();
    let ctx = Arc::new(ctx.as_ref().clone().with_caches(caches));
    let in_namespace = gateways.clone();
    let for_secrets = gateways.clone();
    let errors = ErrorCounts::default();
    controller
        .owns_stream(trimmed_watch(
            scope.api::<Deployment>(),
            &children,
            writers.deployments,
        ))
        .owns_stream(trimmed_watch(
            scope.api::<Service>(),
            &children,
            writers.services,
        ))
        .owns_stream(trimmed_watch(
            scope.api::<ConfigMap>(),
            &children,
            writers.config_maps,
        ))
        .owns_stream(trimmed_watch(
            scope.api::<ServiceAccount>(),
            &children,
            writers.service_accounts,
        ))
        .owns_stream(trimmed_watch(scope.api::<Role>(), &children, writers.roles))
        .owns_stream(trimmed_watch(
            scope.api::<RoleBinding>(),
            &children,
            writers.role_bindings,
        ))
        .owns_stream(trimmed_watch(
            scope.api::<PodDisruptionBudget>(),
            &children,
            writers.pod_disruption_budgets,
        ))
        // A user change may select or deselect it for any gateway of its namespace.
        .watches_stream(
            trimmed_watch(scope.api::<SstpUser>(), &config, writers.users),
            move |user| {
                in_namespace
                    .state()
                    .into_iter()
                    .filter(|gw| gw.namespace() == user.namespace())
                    .map(|gw| ObjectRef::from_obj(gw.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        // Gateway pods (owned by ReplicaSets, not by the gateway): their status feeds the
        // gateway's conditions. Only pods with the operator's name label are watched.
        .watches_stream(
            trimmed_watch(
                scope.api::<Pod>(),
                &config.clone().labels(&format!("{NAME_LABEL}={APP_NAME}")),
                writers.pods,
            ),
            |pod| triggers::gateway_of_pod(&pod),
        )
        // Every Secret of the scope, one watch: the gateway's own (`<gw>-users`, `-tls`, `-ca`)
        // wake it as its children do; password, BYO and cert-manager TLS Secrets wake only the
        // gateways they concern. Only small Opaque Secrets keep their data in the store.
        .watches_stream(
            cache::watch(
                scope.api::<Secret>(),
                &config,
                writers.secrets,
                cache::trimmed_secret,
            ),
            move |secret| {
                triggers::gateways_for_secret(&secret, &for_secrets.state(), &users.state())
            },
        )
        .graceful_shutdown_on(stop)
        .run(
            counting(errors.clone(), live.clone(), gateway::reconcile),
            move |gw, error, ctx| {
                policy(
                    &errors,
                    &live,
                    gateway::CONTROLLER,
                    gw.as_ref(),
                    error,
                    &ctx,
                )
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

async fn user_controller(
    controller: Controller<SstpUser>,
    scope: Scope,
    ctx: Arc<Context>,
    stop: Stop,
) {
    let config = watcher::Config::default().any_semantic();
    let store = controller.store();
    let for_gateways = store.clone();
    let live = store.clone();
    let errors = ErrorCounts::default();
    controller
        .owns(scope.api::<Secret>(), config.clone())
        .watches(scope.api::<SstpGateway>(), config.clone(), move |gw| {
            for_gateways
                .state()
                .into_iter()
                .filter(|user| user.namespace() == gw.namespace())
                .map(|user| ObjectRef::from_obj(user.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches(scope.api::<Secret>(), config, move |secret| {
            let name = secret.name_any();
            store
                .state()
                .into_iter()
                .filter(|user| {
                    user.namespace() == secret.namespace() && user.password_ref().name == name
                })
                .map(|user| ObjectRef::from_obj(user.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(stop)
        .run(
            counting(errors.clone(), live.clone(), user::reconcile),
            move |user, error, ctx| {
                policy(&errors, &live, user::CONTROLLER, user.as_ref(), error, &ctx)
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

/// [`cache::watch`] of a kind other than Secrets, trimmed as every store is.
fn trimmed_watch<K>(
    api: Api<K>,
    config: &watcher::Config,
    writer: kube::runtime::reflector::store::Writer<K>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    cache::watch(api, config, writer, cache::trimmed)
}

/// Whether `store` still has the object of an [`ErrorCounts`] key (`namespace/name`).
fn in_store<K>(store: &Store<K>, key: &str) -> bool
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    key.split_once('/').is_some_and(|(namespace, name)| {
        store.get(&ObjectRef::new(name).within(namespace)).is_some()
    })
}

/// `reconcile`, wrapped the same way for both controllers: a success forgets the object's
/// failures, and any reconcile forgets those of objects the store no longer has.
fn counting<K, Fut>(
    errors: ErrorCounts,
    store: Store<K>,
    reconcile: fn(Arc<K>, Arc<Context>) -> Fut,
) -> impl FnMut(Arc<K>, Arc<Context>) -> BoxFuture<'static, crate::Result<Action>>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    Fut: Future<Output = crate::Result<Action>> + Send + 'static,
{
    move |object, ctx| {
        let (errors, store) = (errors.clone(), store.clone());
        async move {
            let key = ErrorCounts::key(object.as_ref());
            let result = reconcile(object, ctx).await;
            if result.is_ok() {
                errors.succeeded(&key, |other| in_store(&store, other));
            }
            result
        }
        .boxed()
    }
}

/// Logs, counts and backs off.
fn policy<K>(
    errors: &ErrorCounts,
    store: &Store<K>,
    name: &'static str,
    object: &K,
    error: &crate::Error,
    ctx: &Context,
) -> Action
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    warn!(controller = name, namespace = object.namespace(), object = object.name_any(), error = %error, "reconcile failed");
    ctx.metrics.reconcile_failed(name, error);
    let failures = errors.failed(ErrorCounts::key(object), |other| in_store(store, other));
    controller::error_backoff(failures)
}

/// Default lease timings (seconds): a standby takes over at most this long after a crash.
pub const DEFAULT_LEASE_DURATION: u64 = 15;
/// Default renewal margin.
pub const DEFAULT_LEASE_GRACE: u64 = 5;

#[cfg(test)]
mod tests {
    use super::scope_namespaces;

    fn owned(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn no_listed_namespace_means_one_scope_over_all_namespaces() {
        assert_eq!(scope_namespaces(&[]), vec![None]);
        assert_eq!(scope_namespaces(&owned(&[""])), vec![None]);
    }

    #[test]
    fn each_listed_namespace_gets_exactly_one_scope() {
        assert_eq!(
            scope_namespaces(&owned(&["vpn-b", "vpn-a", "vpn-b", ""])),
            vec![Some("vpn-a".to_owned()), Some("vpn-b".to_owned())]
        );
    }
}
