use std::{path::Path, process::Command};

use time::macros::datetime;

use super::*;

fn at() -> OffsetDateTime {
    datetime!(2026-01-01 00:00 UTC)
}

fn ca() -> CertificateAuthority {
    CertificateAuthority::generate(
        "Test CA",
        at(),
        Duration::days(365),
        KeyAlgorithm::EcdsaP256,
    )
    .unwrap()
}

fn request(hostnames: &[&str], algorithm: KeyAlgorithm) -> ServerCertRequest {
    ServerCertRequest {
        hostnames: hostnames.iter().map(|h| (*h).to_owned()).collect(),
        not_before: at(),
        validity: Duration::days(90),
        algorithm,
    }
}

#[test]
fn a_server_certificate_names_every_host_and_points_at_the_gateway_crl() {
    let ca = ca();
    let issued = ca
        .issue_server_cert(&request(
            &["vpn.example.com", "alt.example.com", "203.0.113.9"],
            KeyAlgorithm::EcdsaP256,
        ))
        .unwrap();
    let leaf = CertInfo::from_pem(&issued.cert_pem).unwrap();
    assert_eq!(leaf.dns_names, ["vpn.example.com", "alt.example.com"]);
    assert_eq!(
        leaf.ip_addresses,
        ["203.0.113.9".parse::<IpAddr>().unwrap()]
    );
    assert!(leaf.server_auth);
    assert!(!leaf.is_ca);
    assert_eq!(leaf.crl_urls, ["http://vpn.example.com/sstp/ca.crl"]);
    assert_eq!(leaf.not_before, at().unix_timestamp());
    assert_eq!(leaf.not_after, (at() + Duration::days(90)).unix_timestamp());
    assert_eq!(
        leaf.issuer,
        CertInfo::from_pem(ca.cert_pem()).unwrap().subject
    );
    assert!(leaf.matches_host("VPN.example.com"));
    assert!(leaf.matches_host("203.0.113.9"));
    assert!(!leaf.matches_host("other.example.com"));
}

#[test]
fn the_chain_holds_the_leaf_then_the_ca() {
    let ca = ca();
    let issued = ca
        .issue_server_cert(&request(&["vpn.example.com"], KeyAlgorithm::EcdsaP256))
        .unwrap();
    let ders = parse_pem_certificates(&issued.chain_pem).unwrap();
    assert_eq!(ders.len(), 2);
    assert_eq!(parse_pem_certificates(ca.cert_pem()).unwrap()[0], ders[1]);
    assert!(CertInfo::from_der(&ders[1]).unwrap().is_ca);
}

#[test]
fn rsa_is_available_on_request() {
    let issued = ca()
        .issue_server_cert(&request(
            &["vpn.example.com"],
            KeyAlgorithm::Rsa(RsaBits::Rsa2048),
        ))
        .unwrap();
    assert!(issued.key_pem.contains("PRIVATE KEY"));
    let leaf = CertInfo::from_pem(&issued.cert_pem).unwrap();
    assert!(
        leaf.public_key.len() > 256,
        "an RSA-2048 public key is longer than an EC point"
    );
}

#[test]
fn a_ca_reloaded_from_pem_issues_certificates_it_verifies() {
    let original = ca();
    let reloaded =
        CertificateAuthority::from_pem(original.cert_pem(), &original.key_pem()).unwrap();
    let issued = reloaded
        .issue_server_cert(&request(&["vpn.example.com"], KeyAlgorithm::EcdsaP256))
        .unwrap();
    let dir = tempdir("reload");
    assert_openssl_verifies(
        &dir,
        at() + Duration::days(1),
        original.cert_pem(),
        &issued.cert_pem,
        &reloaded.empty_crl(at(), Duration::days(7)).unwrap(),
    );
}

#[test]
fn a_ca_with_someone_elses_key_is_refused() {
    let a = ca();
    let b = ca();
    let err = CertificateAuthority::from_pem(a.cert_pem(), &b.key_pem()).unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
}

#[test]
fn garbage_pem_is_a_parse_error_not_a_panic() {
    assert!(matches!(
        CertInfo::from_pem("hello"),
        Err(PkiError::Parse { .. })
    ));
    let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        CertInfo::from_pem(bad),
        Err(PkiError::Parse { .. })
    ));
    assert!(CertificateAuthority::from_pem(bad, "nope").is_err());
}

#[test]
fn renewal_is_due_at_two_thirds_of_the_lifetime() {
    let issued = ca()
        .issue_server_cert(&request(&["vpn.example.com"], KeyAlgorithm::EcdsaP256))
        .unwrap();
    let leaf = CertInfo::from_pem(&issued.cert_pem).unwrap();
    assert!(!leaf.needs_renewal((at() + Duration::days(59)).unix_timestamp()));
    assert!(leaf.needs_renewal((at() + Duration::days(60)).unix_timestamp()));
}

#[test]
fn an_ipv6_first_hostname_gets_a_bracketed_crl_url() {
    assert_eq!(crl_url("2001:db8::1"), "http://[2001:db8::1]/sstp/ca.crl");
    assert_eq!(crl_url("192.0.2.1"), "http://192.0.2.1/sstp/ca.crl");
}

#[test]
fn no_hostnames_is_an_error() {
    assert!(matches!(
        ca().issue_server_cert(&request(&[], KeyAlgorithm::EcdsaP256)),
        Err(PkiError::NoHostnames)
    ));
}

/// A scratch directory in the system temp dir, emptied first and removed when dropped, so a
/// test run leaves nothing behind (a failing test's directory goes too; rerun to inspect).
pub(super) fn tempdir(name: &str) -> ScratchDir {
    let dir = std::env::temp_dir().join(format!("sstp-gateway-pki-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    ScratchDir(dir)
}

/// See [`tempdir`].
#[derive(Debug)]
pub(super) struct ScratchDir(std::path::PathBuf);

impl std::ops::Deref for ScratchDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An independent implementation must accept the chain with CRL checking on, as Windows does.
pub(super) fn assert_openssl_verifies(
    dir: &Path,
    when: OffsetDateTime,
    ca_pem: &str,
    leaf_pem: &str,
    crl_der: &[u8],
) {
    std::fs::write(dir.join("v-ca.pem"), ca_pem).unwrap();
    std::fs::write(dir.join("v-leaf.pem"), leaf_pem).unwrap();
    std::fs::write(dir.join("v-crl.der"), crl_der).unwrap();
    let crl = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-in"])
        .arg(dir.join("v-crl.der"))
        .arg("-out")
        .arg(dir.join("v-crl.pem"))
        .status()
        .expect("openssl is installed");
    assert!(crl.success(), "openssl cannot read the CRL");
    let out = Command::new("openssl")
        .args(["verify", "-crl_check", "-purpose", "sslserver", "-attime"])
        .arg(when.unix_timestamp().to_string())
        .arg("-CAfile")
        .arg(dir.join("v-ca.pem"))
        .arg("-CRLfile")
        .arg(dir.join("v-crl.pem"))
        .arg(dir.join("v-leaf.pem"))
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
