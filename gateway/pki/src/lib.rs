//! Certificates for the gateway: a CA, server certificates for the client-facing hostnames, and
//! the (empty) CRL that Windows insists on downloading before it trusts the server.
//!
//! Windows' SSTP client checks revocation of the server certificate and refuses to connect when
//! it cannot (error 0x80092013, CRYPT_E_REVOCATION_OFFLINE). So every server certificate carries a
//! CRL Distribution Point at `http://<first hostname>/sstp/ca.crl`, which the gateway serves
//! itself on port 80 (the gateway's admin module), and which the operator issues into Secrets.
//!
//! A crate of its own so that the operator, which issues the same certificates, depends on this
//! and not on the gateway's I/O shell (TUN, NAT, sessions).
//!
//! Key algorithms: ECDSA P-256 by default, RSA (2048/3072/4096) opt-in. Both work because rcgen
//! uses the aws-lc-rs backend here; with ring, RSA key generation would not be available.
#![cfg_attr(test, allow(clippy::unwrap_used))]
#![warn(missing_docs)]

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

pub mod inspect;
pub mod standalone;

pub use inspect::{CertInfo, parse_pem_certificates};
pub use standalone::{StandalonePki, ensure_standalone_pki};

/// The key algorithm of a generated key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256 (default: small, fast, accepted by every Windows since 7).
    #[default]
    EcdsaP256,
    /// RSA with SHA-256, for clients or policies that require RSA.
    Rsa(RsaBits),
}

/// RSA modulus sizes on offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaBits {
    /// 2048-bit modulus.
    Rsa2048,
    /// 3072-bit modulus.
    Rsa3072,
    /// 4096-bit modulus.
    Rsa4096,
}

/// A certificate authority: its certificate (PEM) and its signing key.
#[derive(Debug)]
pub struct CertificateAuthority {
    cert_pem: String,
    /// Subject, key usages and signing key; its `Debug` leaves the key out.
    issuer: Issuer<'static, KeyPair>,
}

/// A freshly issued server certificate.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// The leaf followed by the CA certificate, PEM (what the TLS server sends).
    pub chain_pem: String,
    /// The leaf's private key, PKCS#8 PEM. Never log it.
    pub key_pem: String,
}

/// What a server certificate should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCertRequest {
    /// DNS names and/or IP addresses; the first one is the CN and the CRL host. Not empty.
    pub hostnames: Vec<String>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// Length of validity.
    pub validity: Duration,
    /// Key algorithm of the new key.
    pub algorithm: KeyAlgorithm,
}

/// Why a PKI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused to generate a key or sign.
    #[error("certificate generation failed")]
    Generate(#[source] rcgen::Error),
    /// A PEM or DER input could not be parsed.
    #[error("cannot parse {what}: {problem}")]
    Parse {
        /// Which input (e.g. "CA certificate").
        what: &'static str,
        /// What went wrong.
        problem: String,
    },
    /// A server certificate needs at least one hostname.
    #[error("a server certificate needs at least one hostname")]
    NoHostnames,
    /// Reading or writing a PKI file failed.
    #[error("cannot {action} {path}")]
    Io {
        /// "read", "write", ...
        action: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl CertificateAuthority {
    /// Generates a new self-signed CA valid from `not_before` for `validity`.
    pub fn generate(
        common_name: &str,
        not_before: OffsetDateTime,
        validity: Duration,
        algorithm: KeyAlgorithm,
    ) -> Result<Self, PkiError> {
        let key = generate_key(algorithm)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = not_before;
        params.not_after = not_before + validity;
        params.serial_number = Some(serial_for(&key));
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params.self_signed(&key).map_err(PkiError::Generate)?;
        Self::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// Loads a CA from its PEM certificate and PEM (PKCS#8) private key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|err| PkiError::Parse {
            what: "CA private key",
            problem: err.to_string(),
        })?;
        let info = CertInfo::from_pem(cert_pem)?;
        if info.public_key != key.public_key_raw() {
            return Err(PkiError::Parse {
                what: "CA key pair",
                problem: "the private key does not belong to the certificate".into(),
            });
        }
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(|err| PkiError::Parse {
            what: "CA certificate",
            problem: err.to_string(),
        })?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            issuer,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PKCS#8 PEM. Never log it.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues a server certificate: SANs for every hostname, EKU serverAuth, and the CRL
    /// distribution point on the first hostname.
    pub fn issue_server_cert(
        &self,
        request: &ServerCertRequest,
    ) -> Result<IssuedCertificate, PkiError> {
        let first = request.hostnames.first().ok_or(PkiError::NoHostnames)?;
        let key = generate_key(request.algorithm)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(first);
        params.subject_alt_names = request
            .hostnames
            .iter()
            .map(|host| san(host))
            .collect::<Result<_, _>>()?;
        params.key_usages = match request.algorithm {
            KeyAlgorithm::EcdsaP256 => vec![KeyUsagePurpose::DigitalSignature],
            KeyAlgorithm::Rsa(_) => {
                vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                ]
            }
        };
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![crl_url(first)],
        }];
        params.use_authority_key_identifier_extension = true;
        params.not_before = request.not_before;
        params.not_after = request.not_before + request.validity;
        params.serial_number = Some(serial_for(&key));
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(PkiError::Generate)?;
        let cert_pem = cert.pem();
        Ok(IssuedCertificate {
            chain_pem: format!("{cert_pem}{}", self.cert_pem),
            cert_pem,
            key_pem: key.serialize_pem(),
        })
    }

    /// A signed CRL revoking nothing, DER, valid from `this_update` for `validity`.
    pub fn empty_crl(
        &self,
        this_update: OffsetDateTime,
        validity: Duration,
    ) -> Result<Vec<u8>, PkiError> {
        let params = CertificateRevocationListParams {
            this_update,
            next_update: this_update + validity,
            crl_number: crl_number(this_update),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).map_err(PkiError::Generate)?;
        Ok(crl.der().to_vec())
    }
}

/// The CRL URL that a server certificate for `first_hostname` points at.
pub fn crl_url(first_hostname: &str) -> String {
    match first_hostname.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("http://[{v6}]{CRL_PATH}"),
        _ => format!("http://{first_hostname}{CRL_PATH}"),
    }
}

fn generate_key(algorithm: KeyAlgorithm) -> Result<KeyPair, PkiError> {
    let key = match algorithm {
        KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyAlgorithm::Rsa(bits) => {
            let size = match bits {
                RsaBits::Rsa2048 => rcgen::RsaKeySize::_2048,
                RsaBits::Rsa3072 => rcgen::RsaKeySize::_3072,
                RsaBits::Rsa4096 => rcgen::RsaKeySize::_4096,
            };
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size)
        }
    };
    key.map_err(PkiError::Generate)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn san(host: &str) -> Result<SanType, PkiError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let name = host
        .try_into()
        .map_err(|err: rcgen::Error| PkiError::Parse {
            what: "hostname",
            problem: format!("{host:?}: {err}"),
        })?;
    Ok(SanType::DnsName(name))
}

/// A positive 128-bit serial taken from a hash of the new certificate's public key: keys are
/// fresh random values, so serials are unpredictable and never repeat (RFC 5280 §4.1.2.2).
fn serial_for(key: &KeyPair) -> SerialNumber {
    let digest = Sha256::digest(key.public_key_raw());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

/// RFC 5280 §5.2.3: CRL numbers only grow; the issue time in seconds does that across restarts.
fn crl_number(this_update: OffsetDateTime) -> SerialNumber {
    SerialNumber::from_slice(&this_update.unix_timestamp().max(0).to_be_bytes())
}

/// Path the CRL is served at, on the plain HTTP port.
pub const CRL_PATH: &str = "/sstp/ca.crl";
/// Path the CA certificate is served at, on the plain HTTP port.
pub const CA_CERT_PATH: &str = "/sstp/ca.crt";

#[cfg(test)]
mod tests;
