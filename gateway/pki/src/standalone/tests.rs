use std::os::unix::fs::PermissionsExt;

use time::macros::datetime;

use super::*;
use crate::{
    parse_pem_certificates,
    tests::{assert_openssl_verifies, tempdir},
};

fn hosts(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn start() -> OffsetDateTime {
    datetime!(2026-03-01 12:00 UTC)
}

#[test]
fn a_fresh_directory_gets_a_full_pki_with_private_keys_closed() {
    let dir = tempdir("fresh");
    let pki = ensure_standalone_pki_at(&dir, &hosts(&["vpn.example.com"]), start()).unwrap();
    assert!(pki.created_ca && pki.issued_server_cert && pki.issued_crl);
    for key in [&pki.ca_key, &pki.server_key] {
        let mode = fs::metadata(key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }
    let chain = fs::read_to_string(&pki.server_cert).unwrap();
    assert_eq!(
        parse_pem_certificates(&chain).unwrap().len(),
        2,
        "leaf + CA"
    );
    assert_openssl_verifies(
        &dir,
        start() + Duration::days(1),
        &fs::read_to_string(&pki.ca_cert).unwrap(),
        &chain,
        &fs::read(&pki.crl).unwrap(),
    );
}

#[test]
fn a_second_run_reuses_everything() {
    let dir = tempdir("reuse");
    let first = ensure_standalone_pki_at(&dir, &hosts(&["vpn.example.com"]), start()).unwrap();
    let cert = fs::read(&first.server_cert).unwrap();
    let again = ensure_standalone_pki_at(
        &dir,
        &hosts(&["vpn.example.com"]),
        start() + Duration::days(3),
    )
    .unwrap();
    assert!(!again.created_ca && !again.issued_server_cert && !again.issued_crl);
    assert_eq!(fs::read(&again.server_cert).unwrap(), cert);
}

#[test]
fn changed_hostnames_reissue_the_server_certificate_but_keep_the_ca() {
    let dir = tempdir("rename");
    let first = ensure_standalone_pki_at(&dir, &hosts(&["vpn.example.com"]), start()).unwrap();
    let ca = fs::read(&first.ca_cert).unwrap();
    let again =
        ensure_standalone_pki_at(&dir, &hosts(&["vpn.example.com", "10.0.0.1"]), start()).unwrap();
    assert!(again.issued_server_cert && !again.created_ca);
    assert_eq!(fs::read(&again.ca_cert).unwrap(), ca);
    let leaf = CertInfo::from_pem(&fs::read_to_string(&again.server_cert).unwrap()).unwrap();
    assert_eq!(leaf.ip_addresses.len(), 1);
    // A new first hostname moves the CRL URL, so it counts as a change too.
    let moved =
        ensure_standalone_pki_at(&dir, &hosts(&["10.0.0.1", "vpn.example.com"]), start()).unwrap();
    assert!(moved.issued_server_cert);
}

#[test]
fn certificates_and_crl_are_renewed_after_two_thirds_of_their_lifetime() {
    let dir = tempdir("renew");
    ensure_standalone_pki_at(&dir, &hosts(&["vpn.example.com"]), start()).unwrap();
    let crl_due = ensure_standalone_pki_at(
        &dir,
        &hosts(&["vpn.example.com"]),
        start() + Duration::days(21),
    )
    .unwrap();
    assert!(crl_due.issued_crl && !crl_due.issued_server_cert);
    let cert_due = ensure_standalone_pki_at(
        &dir,
        &hosts(&["vpn.example.com"]),
        start() + Duration::days(245),
    )
    .unwrap();
    assert!(cert_due.issued_server_cert && !cert_due.created_ca);
}

#[test]
fn a_lost_server_key_or_a_mismatched_one_reissues_the_certificate() {
    let dir = tempdir("lostkey");
    let pki = ensure_standalone_pki_at(&dir, &hosts(&["vpn.example.com"]), start()).unwrap();
    fs::remove_file(&pki.server_key).unwrap();
    assert!(
        ensure_standalone_pki_at(&dir, &hosts(&["vpn.example.com"]), start())
            .unwrap()
            .issued_server_cert
    );
    fs::copy(&pki.ca_key, &pki.server_key).unwrap();
    assert!(
        ensure_standalone_pki_at(&dir, &hosts(&["vpn.example.com"]), start())
            .unwrap()
            .issued_server_cert
    );
}

#[test]
fn a_ca_certificate_without_its_key_is_an_error_not_a_new_ca() {
    let dir = tempdir("halfca");
    let pki = ensure_standalone_pki_at(&dir, &hosts(&["vpn.example.com"]), start()).unwrap();
    fs::remove_file(&pki.ca_key).unwrap();
    let err = ensure_standalone_pki_at(&dir, &hosts(&["vpn.example.com"]), start()).unwrap_err();
    assert!(err.to_string().contains("exists without"), "{err}");
    assert!(!pki.ca_key.exists());
}

#[test]
fn a_corrupt_ca_is_an_error() {
    let dir = tempdir("corrupt");
    let pki = ensure_standalone_pki_at(&dir, &hosts(&["vpn.example.com"]), start()).unwrap();
    fs::write(&pki.ca_cert, "not a certificate").unwrap();
    assert!(ensure_standalone_pki_at(&dir, &hosts(&["vpn.example.com"]), start()).is_err());
}

mod tls {
    //! The files work for real TLS: rustls serves the chain and key, and a webpki client that
    //! trusts `ca.crt` and checks revocation against `ca.crl` (as Windows does) accepts them.

    use std::sync::Arc;

    use rustls::{
        ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion,
        client::WebPkiServerVerifier,
        crypto::CryptoProvider,
        pki_types::{
            CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, pem::PemObject,
        },
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    fn verifier(pki: &StandalonePki, crl_from: &Path) -> Arc<WebPkiServerVerifier> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(&pki.ca_cert).unwrap())
            .unwrap();
        let crl = CertificateRevocationListDer::from(fs::read(crl_from).unwrap());
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .with_crls([crl])
            .build()
            .unwrap()
    }

    /// One handshake over an in-memory pipe; the server sends "hello" and closes.
    async fn handshake(
        pki: &StandalonePki,
        verifier: Arc<WebPkiServerVerifier>,
        version: &'static SupportedProtocolVersion,
        name: &str,
    ) -> Result<(), String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.server_cert)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
        let server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_webpki_verifier(verifier)
            .with_no_client_auth();
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let server_task = tokio::spawn(async move {
            let mut tls = acceptor
                .accept(server_io)
                .await
                .map_err(|e| e.to_string())?;
            tls.write_all(b"hello").await.map_err(|e| e.to_string())?;
            tls.shutdown().await.map_err(|e| e.to_string())
        });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let mut tls = connector
            .connect(name, client_io)
            .await
            .map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.map_err(|e| e.to_string())?;
        assert_eq!(got, b"hello");
        server_task.await.unwrap()
    }

    #[tokio::test]
    async fn a_revocation_checking_client_accepts_the_chain_over_tls12_and_tls13() {
        let dir = tempdir("rustls");
        let pki = ensure_standalone_pki(&dir, &hosts(&["vpn.example.com", "192.0.2.10"])).unwrap();
        for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
            for name in ["vpn.example.com", "192.0.2.10"] {
                handshake(&pki, verifier(&pki, &pki.crl), version, name)
                    .await
                    .unwrap();
            }
        }
        let wrong_name = handshake(
            &pki,
            verifier(&pki, &pki.crl),
            &rustls::version::TLS13,
            "other.example.com",
        )
        .await;
        let err = wrong_name.unwrap_err();
        assert!(err.contains("not valid for name"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_crl_from_another_ca_leaves_revocation_unknown_and_the_client_refuses() {
        let dir = tempdir("rustls-othercrl");
        let other = tempdir("rustls-othercrl-ca");
        let pki = ensure_standalone_pki(&dir, &hosts(&["vpn.example.com"])).unwrap();
        let foreign = ensure_standalone_pki(&other, &hosts(&["vpn.example.com"])).unwrap();
        let err = handshake(
            &pki,
            verifier(&pki, &foreign.crl),
            &rustls::version::TLS13,
            "vpn.example.com",
        )
        .await
        .unwrap_err();
        assert!(err.contains("UnknownRevocationStatus"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(&other).unwrap();
    }
}
