//! The standalone PKI: a gateway running without the operator keeps its own CA in a directory.
//!
//! Files (PEM unless noted): `ca.crt`, `ca.key` (0600), `server.crt` (leaf + CA), `server.key`
//! (0600), `ca.crl` (DER). Existing files are reused; the server certificate is reissued when the
//! hostnames change, the CA changed, or it is past two thirds of its lifetime; the CRL is reissued
//! when missing or past two thirds of its validity (an expired CRL makes Windows refuse the
//! server just like a missing one). A damaged CA is an error, never silently replaced: a new CA
//! would break every client that trusts the old one.

use std::{
    collections::BTreeSet,
    fs,
    io::Write,
    net::IpAddr,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use tracing::info;

use super::{CertInfo, CertificateAuthority, KeyAlgorithm, PkiError, ServerCertRequest, crl_url};

/// Where the standalone PKI's files are, and what [`ensure_standalone_pki`] had to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandalonePki {
    /// CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// CA private key (PEM, mode 0600).
    pub ca_key: PathBuf,
    /// Server certificate chain: leaf then CA (PEM).
    pub server_cert: PathBuf,
    /// Server private key (PEM, mode 0600).
    pub server_key: PathBuf,
    /// Empty CRL signed by the CA (DER).
    pub crl: PathBuf,
    /// A new CA was generated.
    pub created_ca: bool,
    /// A new server certificate was issued.
    pub issued_server_cert: bool,
    /// A new CRL was issued.
    pub issued_crl: bool,
}

/// Creates or reuses the PKI in `dir` for `hostnames`, at the current time.
pub fn ensure_standalone_pki(dir: &Path, hostnames: &[String]) -> Result<StandalonePki, PkiError> {
    ensure_standalone_pki_at(dir, hostnames, OffsetDateTime::now_utc())
}

/// [`ensure_standalone_pki`] with the clock passed in.
pub fn ensure_standalone_pki_at(
    dir: &Path,
    hostnames: &[String],
    now: OffsetDateTime,
) -> Result<StandalonePki, PkiError> {
    if hostnames.is_empty() {
        return Err(PkiError::NoHostnames);
    }
    fs::create_dir_all(dir).map_err(io_error("create", dir))?;
    let mut pki = StandalonePki {
        ca_cert: dir.join("ca.crt"),
        ca_key: dir.join("ca.key"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        crl: dir.join("ca.crl"),
        created_ca: false,
        issued_server_cert: false,
        issued_crl: false,
    };
    let ca = load_or_create_ca(&mut pki, now)?;
    let ca_info = CertInfo::from_pem(ca.cert_pem())?;
    if pki.created_ca || !server_cert_fits(&pki, &ca_info, hostnames, now) {
        let issued = ca.issue_server_cert(&ServerCertRequest {
            hostnames: hostnames.to_vec(),
            not_before: now - CLOCK_SKEW,
            validity: SERVER_VALIDITY,
            algorithm: KeyAlgorithm::EcdsaP256,
        })?;
        write_file(&pki.server_key, issued.key_pem.as_bytes(), SECRET_MODE)?;
        write_file(&pki.server_cert, issued.chain_pem.as_bytes(), PUBLIC_MODE)?;
        pki.issued_server_cert = true;
        info!(dir = %dir.display(), "issued a new standalone server certificate");
    }
    if pki.created_ca || !crl_fits(&pki.crl, &ca_info, now) {
        let der = ca.empty_crl(now - CLOCK_SKEW, CRL_VALIDITY)?;
        write_file(&pki.crl, &der, PUBLIC_MODE)?;
        pki.issued_crl = true;
    }
    Ok(pki)
}

fn load_or_create_ca(
    pki: &mut StandalonePki,
    now: OffsetDateTime,
) -> Result<CertificateAuthority, PkiError> {
    match (pki.ca_cert.exists(), pki.ca_key.exists()) {
        (true, true) => {
            let cert = read_string(&pki.ca_cert)?;
            let key = read_string(&pki.ca_key)?;
            CertificateAuthority::from_pem(&cert, &key)
        }
        (false, false) => {
            let ca = CertificateAuthority::generate(
                &ca_common_name(&pki.ca_cert, now),
                now - CLOCK_SKEW,
                CA_VALIDITY,
                KeyAlgorithm::EcdsaP256,
            )?;
            write_file(&pki.ca_key, ca.key_pem().as_bytes(), SECRET_MODE)?;
            write_file(&pki.ca_cert, ca.cert_pem().as_bytes(), PUBLIC_MODE)?;
            pki.created_ca = true;
            info!(path = %pki.ca_cert.display(), "created a new standalone CA");
            Ok(ca)
        }
        (has_cert, _) => Err(PkiError::Parse {
            what: "standalone CA",
            problem: format!(
                "{} exists without {}; restore it or remove both to create a new CA",
                if has_cert {
                    pki.ca_cert.display()
                } else {
                    pki.ca_key.display()
                },
                if has_cert {
                    pki.ca_key.display()
                } else {
                    pki.ca_cert.display()
                },
            ),
        }),
    }
}

/// Whether the existing server certificate and key can be kept.
fn server_cert_fits(
    pki: &StandalonePki,
    ca: &CertInfo,
    hostnames: &[String],
    now: OffsetDateTime,
) -> bool {
    let Some(first) = hostnames.first() else {
        return false;
    };
    let (Ok(chain), Ok(key_pem)) = (read_string(&pki.server_cert), read_string(&pki.server_key))
    else {
        return false;
    };
    let (Ok(leaf), Ok(key)) = (
        CertInfo::from_pem(&chain),
        rcgen::KeyPair::from_pem(&key_pem),
    ) else {
        return false;
    };
    let names_match = name_set(&leaf.dns_names, &leaf.ip_addresses) == wanted_names(hostnames)
        && leaf.crl_urls == [crl_url(first)];
    leaf.issuer == ca.subject
        && leaf.public_key == key.public_key_raw()
        && names_match
        && !leaf.needs_renewal(now.unix_timestamp())
}

/// Whether the existing CRL is the CA's and not yet past two thirds of its validity.
fn crl_fits(path: &Path, ca: &CertInfo, now: OffsetDateTime) -> bool {
    let Ok(der) = fs::read(path) else {
        return false;
    };
    let Ok((_, crl)) = x509_parser::parse_x509_crl(&der) else {
        return false;
    };
    let Some(next) = crl.next_update() else {
        return false;
    };
    let this = crl.last_update().timestamp();
    let next = next.timestamp();
    crl.issuer().to_string() == ca.subject && now.unix_timestamp() < this + (next - this) / 3 * 2
}

/// Two standalone CAs must not share a subject name: clients and webpki look CRLs up by issuer
/// name, so a CRL of one would be checked against the other's key. A short hash of the time,
/// path and process makes the name unique without a random number generator.
fn ca_common_name(path: &Path, now: OffsetDateTime) -> String {
    let mut hasher = Sha256::new();
    hasher.update(now.unix_timestamp_nanos().to_be_bytes());
    hasher.update(path.as_os_str().as_encoded_bytes());
    hasher.update(std::process::id().to_be_bytes());
    let id: String = hasher.finalize()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{CA_COMMON_NAME} {id}")
}

fn wanted_names(hostnames: &[String]) -> BTreeSet<String> {
    let (ips, dns): (Vec<_>, Vec<_>) = hostnames.iter().partition(|h| h.parse::<IpAddr>().is_ok());
    let ips: Vec<IpAddr> = ips.iter().filter_map(|h| h.parse().ok()).collect();
    let dns: Vec<String> = dns.into_iter().cloned().collect();
    name_set(&dns, &ips)
}

fn name_set(dns: &[String], ips: &[IpAddr]) -> BTreeSet<String> {
    dns.iter()
        .map(|d| d.to_ascii_lowercase())
        .chain(ips.iter().map(IpAddr::to_string))
        .collect()
}

fn read_string(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(io_error("read", path))
}

/// Writes through a temporary file and a rename, so a crash never leaves half a key behind.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_error("create", &tmp))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io_error("write", &tmp))?;
    fs::rename(&tmp, path).map_err(io_error("rename into place", path))
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PkiError {
    let path = path.to_owned();
    move |source| PkiError::Io {
        action,
        path,
        source,
    }
}

const CA_COMMON_NAME: &str = "SSTP Gateway CA";
/// Ten years: replacing a CA means touching every client, so it should outlive the deployment.
const CA_VALIDITY: Duration = Duration::days(3650);
/// One year; reissued at two thirds, i.e. after about eight months.
const SERVER_VALIDITY: Duration = Duration::days(365);
/// Thirty days; reissued after twenty.
const CRL_VALIDITY: Duration = Duration::days(30);
/// Backdate notBefore so clients with a slightly slow clock accept a brand-new certificate.
const CLOCK_SKEW: Duration = Duration::hours(1);
const SECRET_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;

#[cfg(test)]
mod tests;
