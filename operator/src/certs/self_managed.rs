//! The built-in CA: keeps `<gw>-ca` (CA certificate, key, CRL) and `<gw>-tls` (server chain,
//! key, CA certificate, CRL) current, reusing whatever is stored while it still fits, so an
//! unchanged world renders byte-identical Secrets and the operator writes nothing.
//!
//! Renewal: the server certificate at two thirds of its lifetime, the CA at two thirds of its
//! ten years, the CRL at half of its week. The earliest of those times is when the controller
//! looks again.

use jiff::{SignedDuration, Timestamp};
use sstp_api::gateway::{KeyAlgorithmName, SelfManagedTls};
use sstp_pki::{CertInfo, CertificateAuthority, KeyAlgorithm, RsaBits, ServerCertRequest, crl_url};

use super::{Checked, offset, unix};
use crate::{
    Result,
    resources::secrets::{CaMaterial, TlsMaterial},
};

/// What the built-in CA decided.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `<gw>-ca` content.
    pub ca: CaMaterial,
    /// `<gw>-tls` content.
    pub tls: TlsMaterial,
    /// The served leaf and when to look again.
    pub checked: Checked,
    /// Whether a new server certificate was issued (for an event).
    pub issued: bool,
}

/// Brings the stored CA and TLS material up to date for `hostnames` at `now`.
pub fn reconcile(
    stored_ca: Option<CaMaterial>,
    stored_tls: Option<TlsMaterial>,
    hostnames: &[String],
    settings: &SelfManagedTls,
    now: Timestamp,
) -> Result<Outcome> {
    let (authority, ca_info, mut crl_der, ca_fresh) =
        match stored_ca.and_then(|ca| usable_ca(ca, now)) {
            Some((authority, info, crl)) => (authority, info, crl, false),
            None => {
                let authority = CertificateAuthority::generate(
                    &format!(
                        "{} SSTP CA",
                        hostnames.first().map_or("gateway", String::as_str)
                    ),
                    offset(now - SignedDuration::from_mins(5)),
                    time::Duration::seconds(CA_LIFETIME_SECONDS),
                    KeyAlgorithm::EcdsaP256,
                )?;
                let info = CertInfo::from_pem(authority.cert_pem())?;
                (authority, info, Vec::new(), true)
            }
        };
    let crl_due = ca_fresh || crl_needs_refresh(&crl_der, now);
    if crl_due {
        crl_der =
            authority.empty_crl(offset(now), time::Duration::seconds(CRL_LIFETIME_SECONDS))?;
    }
    let lifetime = settings
        .certificate_lifetime_seconds
        .unwrap_or(DEFAULT_CERT_LIFETIME_SECONDS);
    let reusable = stored_tls.filter(|tls| !ca_fresh && leaf_fits(tls, &ca_info, hostnames, now));
    let (tls, issued) = match reusable {
        Some(mut tls) => {
            tls.ca_pem = Some(authority.cert_pem().to_owned());
            tls.crl_der = Some(crl_der.clone());
            (tls, false)
        }
        None => {
            let leaf = authority.issue_server_cert(&ServerCertRequest {
                hostnames: hostnames.to_vec(),
                // A little back-dating absorbs clock skew between the operator and clients.
                not_before: offset(
                    now - SignedDuration::from_secs(BACKDATE_SECONDS.min(lifetime / 10)),
                ),
                validity: time::Duration::seconds(lifetime),
                algorithm: algorithm(settings.algorithm),
            })?;
            let tls = TlsMaterial {
                chain_pem: leaf.chain_pem,
                key_pem: leaf.key_pem,
                ca_pem: Some(authority.cert_pem().to_owned()),
                crl_der: Some(crl_der.clone()),
            };
            (tls, true)
        }
    };
    let info = CertInfo::from_pem(&tls.chain_pem)?;
    let revisit_at = [
        renewal_time(&info),
        renewal_time(&ca_info),
        crl_refresh_time(&crl_der),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(now);
    Ok(Outcome {
        ca: CaMaterial {
            cert_pem: authority.cert_pem().to_owned(),
            key_pem: authority.key_pem(),
            crl_der,
        },
        tls,
        checked: Checked { info, revisit_at },
        issued,
    })
}

/// The stored CA if it loads, matches its key and is not due for renewal.
fn usable_ca(ca: CaMaterial, now: Timestamp) -> Option<(CertificateAuthority, CertInfo, Vec<u8>)> {
    let authority = CertificateAuthority::from_pem(&ca.cert_pem, &ca.key_pem).ok()?;
    let info = CertInfo::from_pem(&ca.cert_pem).ok()?;
    (!info.needs_renewal(unix(now))).then_some((authority, info, ca.crl_der))
}

/// Whether the stored leaf still fits: issued by this CA, names exactly the hostnames with the
/// right CRL distribution point, key matches, not yet at two thirds of its life.
fn leaf_fits(tls: &TlsMaterial, ca: &CertInfo, hostnames: &[String], now: Timestamp) -> bool {
    let Ok(info) = CertInfo::from_pem(&tls.chain_pem) else {
        return false;
    };
    let Ok(key) = rcgen::KeyPair::from_pem(&tls.key_pem) else {
        return false;
    };
    let Some(first) = hostnames.first() else {
        return false;
    };
    let named = hostnames.iter().all(|host| info.matches_host(host))
        && info.dns_names.len() + info.ip_addresses.len() == hostnames.len();
    info.issuer == ca.subject
        && key.public_key_raw() == info.public_key.as_slice()
        && named
        && info.crl_urls == [crl_url(first)]
        && !info.needs_renewal(unix(now))
}

fn renewal_time(info: &CertInfo) -> Option<Timestamp> {
    let lifetime = info.not_after.saturating_sub(info.not_before);
    Timestamp::from_second(info.not_before.saturating_add(lifetime / 3 * 2)).ok()
}

/// The CRL is re-signed halfway through its validity; an unreadable one is due now.
fn crl_refresh_time(crl_der: &[u8]) -> Option<Timestamp> {
    use x509_parser::prelude::FromDer;
    let (_, crl) =
        x509_parser::revocation_list::CertificateRevocationList::from_der(crl_der).ok()?;
    let this = crl.last_update().timestamp();
    let next = crl.next_update()?.timestamp();
    Timestamp::from_second(this + (next - this) / 2).ok()
}

fn crl_needs_refresh(crl_der: &[u8], now: Timestamp) -> bool {
    crl_refresh_time(crl_der).is_none_or(|at| now >= at)
}

fn algorithm(name: KeyAlgorithmName) -> KeyAlgorithm {
    match name {
        KeyAlgorithmName::EcdsaP256 => KeyAlgorithm::EcdsaP256,
        KeyAlgorithmName::Rsa2048 => KeyAlgorithm::Rsa(RsaBits::Rsa2048),
        KeyAlgorithmName::Rsa3072 => KeyAlgorithm::Rsa(RsaBits::Rsa3072),
        KeyAlgorithmName::Rsa4096 => KeyAlgorithm::Rsa(RsaBits::Rsa4096),
    }
}

/// Ten years: clients import the CA certificate once.
const CA_LIFETIME_SECONDS: i64 = 10 * 365 * 24 * 3600;
/// Ninety days, like the public CAs.
pub const DEFAULT_CERT_LIFETIME_SECONDS: i64 = 90 * 24 * 3600;
/// A week; re-signed after half of it.
const CRL_LIFETIME_SECONDS: i64 = 7 * 24 * 3600;
/// Back-dating of new server certificates (at most a tenth of their lifetime).
const BACKDATE_SECONDS: i64 = 300;

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn hosts() -> Vec<String> {
        vec!["vpn.example.com".into(), "203.0.113.7".into()]
    }

    #[test]
    fn a_fresh_gateway_gets_a_ca_and_a_server_cert_with_every_name_server_auth_and_the_crl_point() {
        let outcome = reconcile(
            None,
            None,
            &hosts(),
            &SelfManagedTls::default(),
            at("2030-01-01T00:00:00Z"),
        )
        .unwrap();
        assert!(outcome.issued);
        let info = &outcome.checked.info;
        assert!(info.matches_host("vpn.example.com") && info.matches_host("203.0.113.7"));
        assert!(info.server_auth);
        assert_eq!(info.crl_urls, ["http://vpn.example.com/sstp/ca.crl"]);
        assert_eq!(
            outcome.tls.ca_pem.as_deref(),
            Some(outcome.ca.cert_pem.as_str())
        );
        assert_eq!(
            outcome.tls.crl_der.as_deref(),
            Some(outcome.ca.crl_der.as_slice())
        );
    }

    #[test]
    fn stored_material_that_still_fits_is_reused_byte_for_byte() {
        let now = at("2030-01-01T00:00:00Z");
        let first = reconcile(None, None, &hosts(), &SelfManagedTls::default(), now).unwrap();
        let later = at("2030-01-02T00:00:00Z");
        let second = reconcile(
            Some(first.ca.clone()),
            Some(first.tls.clone()),
            &hosts(),
            &SelfManagedTls::default(),
            later,
        )
        .unwrap();
        assert!(!second.issued);
        assert_eq!(second.ca, first.ca);
        assert_eq!(second.tls, first.tls);
    }

    #[test]
    fn the_server_cert_is_renewed_at_two_thirds_of_its_lifetime_by_the_same_ca() {
        let settings = SelfManagedTls {
            certificate_lifetime_seconds: Some(300),
            ..SelfManagedTls::default()
        };
        let now = at("2030-01-01T00:00:00Z");
        let first = reconcile(None, None, &hosts(), &settings, now).unwrap();
        let info = &first.checked.info;
        assert_eq!(
            first.checked.revisit_at.as_second(),
            info.not_before + (info.not_after - info.not_before) / 3 * 2
        );
        let before = Timestamp::from_second(first.checked.revisit_at.as_second() - 1).unwrap();
        let kept = reconcile(
            Some(first.ca.clone()),
            Some(first.tls.clone()),
            &hosts(),
            &settings,
            before,
        )
        .unwrap();
        assert!(!kept.issued);
        let renewed = reconcile(
            Some(first.ca.clone()),
            Some(first.tls.clone()),
            &hosts(),
            &settings,
            first.checked.revisit_at,
        )
        .unwrap();
        assert!(renewed.issued);
        assert_eq!(renewed.ca.cert_pem, first.ca.cert_pem);
        assert_ne!(
            renewed.checked.info.sha256_fingerprint,
            info.sha256_fingerprint
        );
    }

    #[test]
    fn a_hostname_change_reissues_the_server_cert() {
        let now = at("2030-01-01T00:00:00Z");
        let first = reconcile(None, None, &hosts(), &SelfManagedTls::default(), now).unwrap();
        let more = vec!["vpn.example.com".to_owned(), "vpn2.example.com".to_owned()];
        let second = reconcile(
            Some(first.ca),
            Some(first.tls),
            &more,
            &SelfManagedTls::default(),
            now,
        )
        .unwrap();
        assert!(second.issued);
        assert!(second.checked.info.matches_host("vpn2.example.com"));
    }
}
