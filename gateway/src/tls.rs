//! The TLS side of the SSTP listener: a rustls server configuration (TLS 1.2 and 1.3, ECDSA or
//! RSA key, full chain) that follows its certificate files.
//!
//! Crypto binding needs the hash of the exact leaf a connection was served (MS-SSTP §3.2.5.2),
//! so a certificate is never swapped under a handshake: each load builds a complete
//! [`TlsSnapshot`] (a `ServerConfig` serving exactly that chain, plus the leaf's hashes), and a
//! connection takes one snapshot at accept and keeps it. A reload publishes a new snapshot for
//! later connections; established sessions keep theirs. The files are polled by content, which
//! also catches Kubernetes Secret mounts (they swap a `..data` symlink, which changes neither
//! the path nor, reliably, the mtime of what a watcher was watching).

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    sign::{CertifiedKey, SingleCertAndKey},
};
use sha2::{Digest, Sha256};
use sstp_proto::CertHashes;
use tracing::{info, warn};

use crate::{
    metrics::{Metrics, ReloadResult},
    pki::CertInfo,
};

/// One certificate generation: what a connection is served and the hashes it binds to.
#[derive(Debug)]
pub struct TlsSnapshot {
    /// The rustls configuration serving exactly this chain.
    pub config: Arc<ServerConfig>,
    /// SHA-1 and SHA-256 of the leaf's DER, for crypto binding.
    pub hashes: CertHashes,
    /// The leaf's notAfter (Unix seconds).
    pub not_after: i64,
    /// The chain and key, to rebuild `config` for another TLS version range.
    certified: Arc<CertifiedKey>,
}

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// PEM chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
}

/// The highest TLS version the gateway offers; TLS 1.2 is always offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxTlsVersion {
    /// TLS 1.2 only. Sidesteps a race in Linux sstpc 1.0.18 that only TLS 1.3 and a near-zero
    /// round trip trigger (any server; gateway/README.md, Troubleshooting).
    Tls12,
    /// TLS 1.2 and 1.3.
    #[default]
    Tls13,
}

impl std::str::FromStr for MaxTlsVersion {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "1.2" => Ok(Self::Tls12),
            "1.3" => Ok(Self::Tls13),
            _ => Err(format!("TLS version must be 1.2 or 1.3, not {text:?}")),
        }
    }
}

impl MaxTlsVersion {
    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        match self {
            Self::Tls12 => TLS12_ONLY,
            Self::Tls13 => rustls::DEFAULT_VERSIONS,
        }
    }
}

/// The snapshot in force, shared by the listener and the reloaders.
#[derive(Debug)]
pub struct TlsStore {
    current: RwLock<Arc<TlsSnapshot>>,
    metrics: Metrics,
    max_version: MaxTlsVersion,
}

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The PEM text holds no usable certificate or key.
    #[error("{path}: {problem}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// rustls refused the pair (key does not match, unsupported key type...).
    #[error("the certificate and key cannot be served")]
    Rustls(#[source] rustls::Error),
}

impl TlsSnapshot {
    /// Builds a snapshot from PEM texts.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], files: &CertFiles) -> Result<Self, TlsError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|err| pem_error(&files.cert, err.to_string()))?;
        let leaf = chain
            .first()
            .ok_or_else(|| pem_error(&files.cert, "no certificate found".into()))?;
        let hashes = CertHashes::from_der(leaf.as_ref());
        let not_after = CertInfo::from_der(leaf.as_ref())
            .map(|info| info.not_after)
            .map_err(|err| pem_error(&files.cert, err.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|err| pem_error(&files.key, err.to_string()))?;
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let certified =
            Arc::new(CertifiedKey::from_der(chain, key, &provider).map_err(TlsError::Rustls)?);
        Ok(Self {
            config: server_config(&certified, MaxTlsVersion::default()),
            hashes,
            not_after,
            certified,
        })
    }

    /// The same certificate, offered with TLS versions up to `max`.
    #[must_use]
    pub fn with_max_version(mut self, max: MaxTlsVersion) -> Self {
        self.config = server_config(&self.certified, max);
        self
    }

    /// Reads and builds a snapshot from files.
    pub fn load(files: &CertFiles) -> Result<(Self, [u8; 32]), TlsError> {
        let cert = read(&files.cert)?;
        let key = read(&files.key)?;
        let digest = content_digest(&cert, &key);
        Ok((Self::from_pem(&cert, &key, files)?, digest))
    }
}

impl TlsStore {
    /// A store serving `initial` over TLS 1.2 and 1.3.
    pub fn new(initial: TlsSnapshot, metrics: Metrics) -> Arc<Self> {
        Self::with_max_version(initial, metrics, MaxTlsVersion::default())
    }

    /// A store serving `initial`, and every later snapshot, with TLS versions up to `max`.
    pub fn with_max_version(
        initial: TlsSnapshot,
        metrics: Metrics,
        max: MaxTlsVersion,
    ) -> Arc<Self> {
        metrics.set_certificate_expiry(initial.not_after);
        Arc::new(Self {
            current: RwLock::new(Arc::new(initial.with_max_version(max))),
            metrics,
            max_version: max,
        })
    }

    /// The snapshot a new connection uses for its whole life.
    pub fn snapshot(&self) -> Arc<TlsSnapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Serves `next` to connections accepted from now on.
    pub fn replace(&self, next: TlsSnapshot) {
        self.metrics.set_certificate_expiry(next.not_after);
        let next = next.with_max_version(self.max_version);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
    }
}

/// Polls `files` every `interval` and publishes a new snapshot when their content changed and
/// loads; a broken pair is logged and the previous certificate stays in force.
pub async fn watch_files(
    store: Arc<TlsStore>,
    files: CertFiles,
    initial_digest: [u8; 32],
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut last = initial_digest;
    // What failed last (files unreadable, or contents that do not load), so that a failure
    // is logged and counted once per change of the files, not at every poll.
    let mut last_failure: Option<Failure> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        let (cert, key) = match (read(&files.cert), read(&files.key)) {
            (Ok(cert), Ok(key)) => (cert, key),
            (Err(err), _) | (_, Err(err)) => {
                if last_failure != Some(Failure::Unreadable) {
                    last_failure = Some(Failure::Unreadable);
                    store.metrics.certificate_reloaded(ReloadResult::Error);
                    warn!(error = %err, "TLS certificate files cannot be read; keeping the current certificate");
                }
                continue;
            }
        };
        let digest = content_digest(&cert, &key);
        if digest == last {
            last_failure = None;
            continue;
        }
        if last_failure == Some(Failure::Invalid(digest)) {
            continue;
        }
        match TlsSnapshot::from_pem(&cert, &key, &files) {
            Ok(snapshot) => {
                last = digest;
                last_failure = None;
                store.metrics.certificate_reloaded(ReloadResult::Success);
                info!(cert = %files.cert.display(), hashes = ?snapshot.hashes, "TLS certificate reloaded; new connections get it");
                store.replace(snapshot);
            }
            // A Secret update may show the new cert before the new key: this pair is not
            // retried, but the next change of either file is.
            Err(err) => {
                last_failure = Some(Failure::Invalid(digest));
                store.metrics.certificate_reloaded(ReloadResult::Error);
                warn!(error = %err, "new TLS certificate files do not load; keeping the current one");
            }
        }
    }
}

/// Why the last reload attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// A file could not be read (missing, permissions).
    Unreadable,
    /// The files with this content digest do not make a certificate and key.
    Invalid([u8; 32]),
}

/// A rustls configuration serving exactly `certified`.
fn server_config(certified: &Arc<CertifiedKey>, max: MaxTlsVersion) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_protocol_versions(max.versions())
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(Arc::clone(certified))));
    // No TLS 1.3 session tickets: an SSTP connection lives for the whole call, so
    // resumption buys nothing but post-handshake records. (Not the cause of sstpc's TLS 1.3
    // failure, which happens with or without them: gateway/README.md, Troubleshooting.)
    config.send_tls13_tickets = 0;
    Arc::new(config)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn content_digest(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((cert.len() as u64).to_be_bytes());
    hasher.update(cert);
    hasher.update(key);
    hasher.finalize().into()
}

fn pem_error(path: &Path, problem: String) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        problem,
    }
}

static TLS12_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// How often the certificate files are checked.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::pki::{CertificateAuthority, KeyAlgorithm, RsaBits, ServerCertRequest};

    fn issue(algorithm: KeyAlgorithm) -> crate::pki::IssuedCertificate {
        let now = OffsetDateTime::now_utc();
        let ca = CertificateAuthority::generate("test CA", now, time::Duration::days(1), algorithm)
            .unwrap();
        ca.issue_server_cert(&ServerCertRequest {
            hostnames: vec!["vpn.example.com".into()],
            not_before: now,
            validity: time::Duration::days(1),
            algorithm,
        })
        .unwrap()
    }

    fn files() -> CertFiles {
        CertFiles {
            cert: "tls.crt".into(),
            key: "tls.key".into(),
        }
    }

    #[test]
    fn ecdsa_and_rsa_chains_load_and_hash_the_leaf() {
        for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa(RsaBits::Rsa2048)] {
            let issued = issue(algorithm);
            let snapshot = TlsSnapshot::from_pem(
                issued.chain_pem.as_bytes(),
                issued.key_pem.as_bytes(),
                &files(),
            )
            .unwrap();
            let leaf = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                .next()
                .unwrap()
                .unwrap();
            assert_eq!(snapshot.hashes, CertHashes::from_der(leaf.as_ref()));
            assert!(snapshot.not_after > OffsetDateTime::now_utc().unix_timestamp());
        }
    }

    #[test]
    fn a_key_of_another_certificate_or_an_empty_file_is_refused() {
        let (a, b) = (
            issue(KeyAlgorithm::EcdsaP256),
            issue(KeyAlgorithm::EcdsaP256),
        );
        let mismatched =
            TlsSnapshot::from_pem(a.chain_pem.as_bytes(), b.key_pem.as_bytes(), &files());
        assert!(matches!(mismatched, Err(TlsError::Rustls(_))));
        let empty = TlsSnapshot::from_pem(b"", a.key_pem.as_bytes(), &files());
        assert!(matches!(empty, Err(TlsError::Pem { .. })));
    }

    /// Runs an in-memory handshake; returns the negotiated version or the server's error.
    fn handshake(
        server: &Arc<ServerConfig>,
        versions: &[&'static rustls::SupportedProtocolVersion],
        ca_pem: &str,
    ) -> Result<rustls::ProtocolVersion, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let client_config = rustls::ClientConfig::builder_with_protocol_versions(versions)
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = "vpn.example.com".try_into().unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
        let mut server = rustls::ServerConnection::new(Arc::clone(server)).unwrap();
        for _ in 0..10 {
            let mut wire = Vec::new();
            client.write_tls(&mut wire).unwrap();
            server.read_tls(&mut wire.as_slice()).unwrap();
            server.process_new_packets()?;
            let mut wire = Vec::new();
            server.write_tls(&mut wire).unwrap();
            client.read_tls(&mut wire.as_slice()).unwrap();
            let _ = client.process_new_packets();
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(server.protocol_version().unwrap());
            }
        }
        panic!("handshake did not finish");
    }

    /// A CA and a snapshot serving a certificate it issued for `vpn.example.com`.
    fn ca_and_snapshot() -> (CertificateAuthority, TlsSnapshot) {
        let now = OffsetDateTime::now_utc();
        let algorithm = KeyAlgorithm::EcdsaP256;
        let ca = CertificateAuthority::generate("test CA", now, time::Duration::days(1), algorithm)
            .unwrap();
        let issued = ca
            .issue_server_cert(&ServerCertRequest {
                hostnames: vec!["vpn.example.com".into()],
                not_before: now,
                validity: time::Duration::days(1),
                algorithm,
            })
            .unwrap();
        let snapshot = TlsSnapshot::from_pem(
            issued.chain_pem.as_bytes(),
            issued.key_pem.as_bytes(),
            &files(),
        )
        .unwrap();
        (ca, snapshot)
    }

    #[test]
    fn a_tls13_server_sends_no_session_ticket_after_the_client_finished() {
        let (ca, snapshot) = ca_and_snapshot();
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let only13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
        let client_config = rustls::ClientConfig::builder_with_protocol_versions(only13)
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = "vpn.example.com".try_into().unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
        let mut server = rustls::ServerConnection::new(Arc::clone(&snapshot.config)).unwrap();
        for _ in 0..10 {
            let mut wire = Vec::new();
            client.write_tls(&mut wire).unwrap();
            server.read_tls(&mut wire.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            let mut wire = Vec::new();
            server.write_tls(&mut wire).unwrap();
            if !server.is_handshaking() {
                // The client's Finished is in: tickets, if any, would be queued now.
                assert_eq!(
                    server.protocol_version(),
                    Some(rustls::ProtocolVersion::TLSv1_3)
                );
                assert!(wire.is_empty(), "{} bytes after the handshake", wire.len());
                return;
            }
            client.read_tls(&mut wire.as_slice()).unwrap();
            client.process_new_packets().unwrap();
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn the_version_cap_is_what_the_handshake_negotiates() {
        let now = OffsetDateTime::now_utc();
        let ca = CertificateAuthority::generate(
            "test CA",
            now,
            time::Duration::days(1),
            KeyAlgorithm::EcdsaP256,
        )
        .unwrap();
        let issued = ca
            .issue_server_cert(&ServerCertRequest {
                hostnames: vec!["vpn.example.com".into()],
                not_before: now,
                validity: time::Duration::days(1),
                algorithm: KeyAlgorithm::EcdsaP256,
            })
            .unwrap();
        let snapshot = TlsSnapshot::from_pem(
            issued.chain_pem.as_bytes(),
            issued.key_pem.as_bytes(),
            &files(),
        )
        .unwrap();
        let both = Arc::clone(&snapshot.config);
        let tls12 = snapshot.with_max_version(MaxTlsVersion::Tls12).config;
        let any = rustls::DEFAULT_VERSIONS;
        let only13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
        assert_eq!(
            handshake(&both, any, ca.cert_pem()),
            Ok(rustls::ProtocolVersion::TLSv1_3)
        );
        assert_eq!(
            handshake(&tls12, any, ca.cert_pem()),
            Ok(rustls::ProtocolVersion::TLSv1_2)
        );
        assert!(handshake(&tls12, only13, ca.cert_pem()).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn reload_failures_are_counted_once_per_change_of_the_files() {
        let dir = std::env::temp_dir().join(format!("sstp-tls-reload-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let files = CertFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        };
        let (first, second) = (
            issue(KeyAlgorithm::EcdsaP256),
            issue(KeyAlgorithm::EcdsaP256),
        );
        std::fs::write(&files.cert, &first.chain_pem).unwrap();
        std::fs::write(&files.key, &first.key_pem).unwrap();
        let (snapshot, digest) = TlsSnapshot::load(&files).unwrap();
        let metrics = Metrics::new();
        let store = TlsStore::new(snapshot, metrics.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let interval = Duration::from_secs(2);
        let watcher = tokio::spawn(watch_files(
            Arc::clone(&store),
            files.clone(),
            digest,
            interval,
            async {
                let _ = stopped.await;
            },
        ));
        let series = |result: &str| {
            let text = metrics.render();
            let line = format!("sstp_certificate_reload_total{{result=\"{result}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(line.as_str()))
                .map_or(0, |v| v.parse::<u64>().unwrap())
        };
        let polls = |n: u32| async move {
            for _ in 0..n {
                tokio::time::sleep(interval).await;
                tokio::task::yield_now().await;
            }
        };
        // A new certificate with the old key: refused once, however often it is polled.
        std::fs::write(&files.cert, &second.chain_pem).unwrap();
        polls(5).await;
        assert_eq!((series("error"), series("success")), (1, 0));
        // The key file goes missing: once more, until it is back.
        std::fs::remove_file(&files.key).unwrap();
        polls(5).await;
        assert_eq!(series("error"), 2);
        // The matching key arrives: loaded, served, counted.
        std::fs::write(&files.key, &second.key_pem).unwrap();
        polls(2).await;
        assert_eq!((series("error"), series("success")), (2, 1));
        let served = CertificateDer::pem_slice_iter(second.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(
            store.snapshot().hashes,
            CertHashes::from_der(served.as_ref())
        );
        drop(stop);
        watcher.await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
