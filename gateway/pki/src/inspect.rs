//! Reading certificates: expiry, fingerprint, names and usage. The operator reuses these to
//! explain why a bring-your-own certificate is unusable, so each fact is exposed on its own.

use std::net::IpAddr;

use sha2::{Digest, Sha256};
use x509_parser::{
    certificate::X509Certificate, extensions::GeneralName, pem::Pem, prelude::FromDer,
};

use super::PkiError;

/// The facts about one certificate that the gateway and operator act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject as an RFC 4514 string.
    pub subject: String,
    /// Issuer as an RFC 4514 string.
    pub issuer: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// SHA-256 over the DER certificate.
    pub sha256_fingerprint: [u8; 32],
    /// DNS names in the subjectAltName extension.
    pub dns_names: Vec<String>,
    /// IP addresses in the subjectAltName extension.
    pub ip_addresses: Vec<IpAddr>,
    /// Whether the extended key usage allows TLS server authentication (or has no EKU at all).
    pub server_auth: bool,
    /// Whether basicConstraints marks it as a CA.
    pub is_ca: bool,
    /// CRL distribution point URIs.
    pub crl_urls: Vec<String>,
    /// The subject public key bytes (the BIT STRING of subjectPublicKeyInfo).
    pub public_key: Vec<u8>,
}

impl CertInfo {
    /// Inspects the first certificate of a PEM text (the leaf of a chain).
    pub fn from_pem(pem: &str) -> Result<Self, PkiError> {
        let ders = parse_pem_certificates(pem)?;
        let first = ders
            .first()
            .ok_or_else(|| not_a_cert("no CERTIFICATE block in the PEM text"))?;
        Self::from_der(first)
    }

    /// Inspects one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|err| not_a_cert(&err.to_string()))?;
        let (dns_names, ip_addresses) = subject_alt_names(&cert)?;
        let server_auth = match cert
            .extended_key_usage()
            .map_err(|err| not_a_cert(&err.to_string()))?
        {
            Some(eku) => eku.value.server_auth || eku.value.any,
            None => true,
        };
        Ok(Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            sha256_fingerprint: Sha256::digest(der).into(),
            dns_names,
            ip_addresses,
            server_auth,
            is_ca: cert.is_ca(),
            crl_urls: crl_urls(&cert),
            public_key: cert.public_key().subject_public_key.data.to_vec(),
        })
    }

    /// The fingerprint as lowercase hex (64 digits, no separators).
    pub fn fingerprint_hex(&self) -> String {
        self.sha256_fingerprint
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether the certificate names `host` (an IP address, or a DNS name matched
    /// case-insensitively, with `*.` wildcards covering exactly one label).
    pub fn matches_host(&self, host: &str) -> bool {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.ip_addresses.contains(&ip);
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.dns_names.iter().any(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(suffix) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
                None => name == host,
            }
        })
    }

    /// Whether `now` (Unix seconds) is past two thirds of the validity: time to renew.
    pub fn needs_renewal(&self, now: i64) -> bool {
        let lifetime = self.not_after.saturating_sub(self.not_before);
        now >= self.not_before.saturating_add(lifetime / 3 * 2)
    }
}

/// Every CERTIFICATE block of a PEM text, as DER, in order. Other blocks (keys) are skipped.
pub fn parse_pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, PkiError> {
    let mut ders = Vec::new();
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|err| not_a_cert(&format!("bad PEM: {err}")))?;
        if block.label == "CERTIFICATE" {
            ders.push(block.contents);
        }
    }
    Ok(ders)
}

fn subject_alt_names(cert: &X509Certificate<'_>) -> Result<(Vec<String>, Vec<IpAddr>), PkiError> {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    let Some(san) = cert
        .subject_alternative_name()
        .map_err(|err| not_a_cert(&err.to_string()))?
    else {
        return Ok((dns, ips));
    };
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(name) => dns.push((*name).to_owned()),
            GeneralName::IPAddress(bytes) => {
                if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                    ips.push(IpAddr::from(v4));
                } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                    ips.push(IpAddr::from(v6));
                }
            }
            _ => {}
        }
    }
    Ok((dns, ips))
}

fn crl_urls(cert: &X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::{DistributionPointName, ParsedExtension};
    let mut urls = Vec::new();
    for ext in cert.extensions() {
        let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() else {
            continue;
        };
        for point in points.iter() {
            if let Some(DistributionPointName::FullName(names)) = &point.distribution_point {
                for name in names {
                    if let GeneralName::URI(uri) = name {
                        urls.push((*uri).to_owned());
                    }
                }
            }
        }
    }
    urls
}

fn not_a_cert(problem: &str) -> PkiError {
    PkiError::Parse {
        what: "certificate",
        problem: problem.to_owned(),
    }
}
