//! Checking a certificate the operator did not issue (bring-your-own Secret, cert-manager):
//! it must name every hostname, allow TLS server authentication, be inside its validity, and
//! come with the private key of its leaf. Each failure is a sentence for `CertificateReady`.

use jiff::Timestamp;
use sstp_pki::CertInfo;

use super::{Checked, unix};
use crate::resources::secrets::TlsMaterial;

/// Checks `material` for `hostnames` at `now`; the error is a message for the condition.
pub fn check(
    material: &TlsMaterial,
    hostnames: &[String],
    now: Timestamp,
) -> Result<Checked, String> {
    let info = CertInfo::from_pem(&material.chain_pem)
        .map_err(|err| format!("tls.crt is not a PEM certificate chain: {err}"))?;
    let key = rcgen::KeyPair::from_pem(&material.key_pem)
        .map_err(|_| "tls.key is not a PEM (PKCS#8) private key".to_owned())?;
    if key.public_key_raw() != info.public_key.as_slice() {
        return Err("tls.key does not belong to the certificate in tls.crt".to_owned());
    }
    let missing: Vec<&str> = hostnames
        .iter()
        .filter(|host| !info.matches_host(host))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the certificate does not name {} (Windows checks the name it dials)",
            missing.join(", ")
        ));
    }
    if !info.server_auth {
        return Err(
            "the certificate's extended key usage lacks serverAuth (1.3.6.1.5.5.7.3.1)".to_owned(),
        );
    }
    let now_s = unix(now);
    if now_s < info.not_before {
        return Err("the certificate is not valid yet".to_owned());
    }
    if now_s >= info.not_after {
        return Err(format!(
            "the certificate expired at {}",
            super::not_after_text(&info)
        ));
    }
    let revisit_at = Timestamp::from_second(info.not_after).unwrap_or(now);
    Ok(Checked { info, revisit_at })
}

#[cfg(test)]
mod tests {
    use sstp_pki::{CertificateAuthority, KeyAlgorithm, ServerCertRequest};

    use super::*;

    fn issue(hosts: &[&str], start: Timestamp, days: i64) -> TlsMaterial {
        let ca = CertificateAuthority::generate(
            "test CA",
            super::super::offset(start),
            time::Duration::days(365),
            KeyAlgorithm::EcdsaP256,
        )
        .unwrap();
        let leaf = ca
            .issue_server_cert(&ServerCertRequest {
                hostnames: hosts.iter().map(|h| (*h).to_owned()).collect(),
                not_before: super::super::offset(start),
                validity: time::Duration::days(days),
                algorithm: KeyAlgorithm::EcdsaP256,
            })
            .unwrap();
        TlsMaterial {
            chain_pem: leaf.chain_pem,
            key_pem: leaf.key_pem,
            ca_pem: None,
            crl_der: None,
        }
    }

    /// A self-signed certificate whose only extended key usage is clientAuth.
    fn client_auth_only() -> TlsMaterial {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["vpn.example.com".to_owned()]).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = super::super::offset(now());
        params.not_after = super::super::offset(now()) + time::Duration::days(1);
        let cert = params.self_signed(&key).unwrap();
        TlsMaterial {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: None,
            crl_der: None,
        }
    }

    fn now() -> Timestamp {
        "2030-06-01T00:00:00Z".parse().unwrap()
    }

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|h| (*h).to_owned()).collect()
    }

    #[test]
    fn a_fitting_certificate_passes_and_reports_its_expiry() {
        let material = issue(&["vpn.example.com"], now(), 30);
        let checked = check(&material, &hosts(&["vpn.example.com"]), now()).unwrap();
        assert_eq!(checked.revisit_at.as_second(), checked.info.not_after);
    }

    #[test]
    fn a_missing_name_an_expired_certificate_and_a_foreign_key_are_explained() {
        let material = issue(&["vpn.example.com"], now(), 30);
        let err = check(
            &material,
            &hosts(&["vpn.example.com", "other.example.com"]),
            now(),
        )
        .unwrap_err();
        assert!(err.contains("other.example.com"), "{err}");

        let old = issue(
            &["vpn.example.com"],
            "2029-01-01T00:00:00Z".parse().unwrap(),
            30,
        );
        let err = check(&old, &hosts(&["vpn.example.com"]), now()).unwrap_err();
        assert!(err.contains("expired"), "{err}");

        let err = check(&client_auth_only(), &hosts(&["vpn.example.com"]), now()).unwrap_err();
        assert!(err.contains("serverAuth"), "{err}");

        let mut mixed = issue(&["vpn.example.com"], now(), 30);
        mixed.key_pem = issue(&["vpn.example.com"], now(), 30).key_pem;
        let err = check(&mixed, &hosts(&["vpn.example.com"]), now()).unwrap_err();
        assert!(err.contains("does not belong"), "{err}");
    }
}
