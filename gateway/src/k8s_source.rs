//! The gateway's own Secrets, watched through the Kubernetes API: the users document (so a
//! disabled or deleted user is gone within a second or two, where a mounted Secret can take a
//! minute to change) and the TLS Secret (so a renewed certificate is served at once).
//!
//! Each watch names exactly one Secret with the field selector `metadata.name=<name>`, which is
//! what lets the pod's Role grant `get`/`list`/`watch` on those two `resourceNames` only. The
//! Secret's content goes to the same places the file sources feed: the users text to
//! [`UsersPublisher::offer`] (which keeps the last good document when a new one is refused), the
//! certificate pair to [`TlsStore::replace`]. A deleted Secret changes nothing: the last good
//! content stays in force until a new one appears. Watch errors are retried after
//! [`WatchBackoff`]: at most a second apart, not kube's default of up to 30 s, so a user disabled
//! just after the API server comes back from an outage is cut off within a second or two.

use std::{future::Future, sync::Arc};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, watcher},
};
use sstp_api::watch_backoff::WatchBackoff;
use tracing::{debug, info, warn};

use crate::{
    tls::{CertFiles, TlsSnapshot, TlsStore},
    users_file::UsersPublisher,
};

/// Where a watched Secret is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
}

impl SecretRef {
    /// `namespace` if given, else the client's default namespace (the pod's own in a cluster,
    /// the kubeconfig context's outside).
    pub fn new(client: &Client, namespace: Option<&str>, name: &str) -> Self {
        Self {
            namespace: namespace
                .map_or_else(|| client.default_namespace().to_owned(), str::to_owned),
            name: name.to_owned(),
        }
    }

    fn origin(&self) -> String {
        format!("secret {}/{}", self.namespace, self.name)
    }
}

/// What `server` calls for `users: {kubernetesSecret: {name, namespace, key}}`: spawns a task
/// that makes a client from the environment (in-cluster service account, else `KUBECONFIG`),
/// retrying every few seconds until it can, then runs [`watch_users_secret`] until `shutdown`.
pub fn spawn_users_secret_watch(
    name: String,
    namespace: Option<String>,
    key: String,
    publisher: UsersPublisher,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        let client = loop {
            match Client::try_default().await {
                Ok(client) => break client,
                Err(err) => {
                    warn!(error = %err, "no Kubernetes client for the users Secret yet; retrying");
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep(CLIENT_RETRY) => {}
                    }
                }
            }
        };
        let secret = SecretRef::new(&client, namespace.as_deref(), &name);
        watch_users_secret(client, secret, key, publisher, shutdown).await;
    })
}

/// Offers the users document under `key` of the Secret to `publisher` on every change, until
/// `shutdown`.
pub async fn watch_users_secret(
    client: Client,
    secret: SecretRef,
    key: String,
    publisher: UsersPublisher,
    shutdown: impl Future<Output = ()>,
) {
    let origin = secret.origin();
    let mut last: Option<Vec<u8>> = None;
    watch_named(client, &secret, shutdown, |data| {
        let Some(value) = data
            .and_then(|data| data.get(&key))
            .map(|value| value.0.clone())
        else {
            warn!(
                origin,
                key, "the users Secret lacks its key; the last good document stays in force"
            );
            return;
        };
        if last.as_ref() == Some(&value) {
            return;
        }
        match std::str::from_utf8(&value) {
            // offer() logs and counts a refused document itself.
            Ok(text) => {
                let _ = publisher.offer(&origin, text);
            }
            Err(_) => warn!(
                origin,
                "the users document is not UTF-8; the last good one stays in force"
            ),
        }
        last = Some(value);
    })
    .await;
}

/// Replaces the served certificate in `store` whenever `tls.crt`/`tls.key` of the Secret
/// change and load, until `shutdown`. `files` only names the pair in error messages (the mounted
/// copies of the same Secret); the pair itself comes from the API.
pub async fn watch_tls_secret(
    client: Client,
    secret: SecretRef,
    store: Arc<TlsStore>,
    files: CertFiles,
    shutdown: impl Future<Output = ()>,
) {
    let origin = secret.origin();
    let mut last: Option<(Vec<u8>, Vec<u8>)> = None;
    watch_named(client, &secret, shutdown, |data| {
        let pair = data.and_then(|data| {
            Some((data.get(TLS_CERT_KEY)?.0.clone(), data.get(TLS_KEY_KEY)?.0.clone()))
        });
        let Some(pair) = pair else {
            debug!(origin, "the TLS Secret has no tls.crt/tls.key pair yet");
            return;
        };
        if last.as_ref() == Some(&pair) {
            return;
        }
        match TlsSnapshot::from_pem(&pair.0, &pair.1, &files) {
            Ok(snapshot) => {
                info!(origin, "TLS certificate from the API loaded; new connections get it");
                store.replace(snapshot);
                last = Some(pair);
            }
            Err(err) => warn!(origin, error = %err, "the TLS Secret does not load; keeping the current certificate"),
        }
    })
    .await;
}

/// Watches one Secret by name and hands each version's data to `apply`.
async fn watch_named(
    client: Client,
    secret: &SecretRef,
    shutdown: impl Future<Output = ()>,
    mut apply: impl FnMut(Option<&std::collections::BTreeMap<String, k8s_openapi::ByteString>>),
) {
    let api: Api<Secret> = Api::namespaced(client, &secret.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", secret.name));
    let stream = watcher(api, config).backoff(WatchBackoff::default());
    tokio::pin!(stream);
    tokio::pin!(shutdown);
    loop {
        let event = tokio::select! {
            () = &mut shutdown => return,
            event = stream.next() => event,
        };
        match event {
            Some(Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object))) => {
                apply(object.data.as_ref());
            }
            Some(Ok(watcher::Event::Delete(_))) => {
                warn!(
                    origin = secret.origin(),
                    "the Secret was deleted; the last good content stays in force"
                );
            }
            Some(Ok(watcher::Event::Init | watcher::Event::InitDone)) => {}
            Some(Err(err)) => {
                warn!(origin = secret.origin(), error = %err, "watch failed; retrying")
            }
            None => return,
        }
    }
}

/// Wait between attempts to configure a client.
const CLIENT_RETRY: std::time::Duration = std::time::Duration::from_secs(3);
/// Certificate chain key of a `kubernetes.io/tls` Secret.
const TLS_CERT_KEY: &str = "tls.crt";
/// Private key key of a `kubernetes.io/tls` Secret.
const TLS_KEY_KEY: &str = "tls.key";
