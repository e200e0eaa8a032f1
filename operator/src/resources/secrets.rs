//! The Secrets the operator writes: `<gw>-users`, `<gw>-tls`, `<gw>-ca` and
//! `<user>-credentials`.

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString,
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use sstp_api::UsersDocument;

use super::{
    Owner,
    config::{USERS_KEY, tls_keys},
};

/// What goes into `<gw>-tls`: the served chain and key, and optionally the CA certificate and
/// CRL the gateway publishes on port 80.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    /// Full chain, leaf first (PEM).
    pub chain_pem: String,
    /// Leaf key (PEM).
    pub key_pem: String,
    /// CA certificate (PEM).
    pub ca_pem: Option<String>,
    /// CRL (DER).
    pub crl_der: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("chain_pem", &self.chain_pem.len())
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// What goes into `<gw>-ca`: the built-in CA.
#[derive(Clone, PartialEq, Eq)]
pub struct CaMaterial {
    /// CA certificate (PEM).
    pub cert_pem: String,
    /// CA key (PEM).
    pub key_pem: String,
    /// Current CRL (DER).
    pub crl_der: Vec<u8>,
}

impl std::fmt::Debug for CaMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaMaterial")
            .field("cert_pem", &self.cert_pem.len())
            .finish_non_exhaustive()
    }
}

/// Secret `<gw>-users` with the users document.
pub fn users_secret(owner: &Owner, document: &UsersDocument) -> Secret {
    secret(
        owner.meta(&owner.names.users),
        "Opaque",
        [(USERS_KEY, document.to_json_pretty().into_bytes())],
    )
}

/// Secret `<gw>-tls` (`kubernetes.io/tls`).
pub fn tls_secret(owner: &Owner, material: &TlsMaterial) -> Secret {
    let mut data = vec![
        (tls_keys::CERT, material.chain_pem.clone().into_bytes()),
        (tls_keys::KEY, material.key_pem.clone().into_bytes()),
    ];
    if let Some(ca) = &material.ca_pem {
        data.push((tls_keys::CA, ca.clone().into_bytes()));
    }
    if let Some(crl) = &material.crl_der {
        data.push((tls_keys::CRL, crl.clone()));
    }
    secret(owner.meta(&owner.names.tls), "kubernetes.io/tls", data)
}

/// Secret `<gw>-ca` with the built-in CA.
pub fn ca_secret(owner: &Owner, material: &CaMaterial) -> Secret {
    secret(
        owner.meta(&owner.names.ca),
        "Opaque",
        [
            (CA_CERT_KEY, material.cert_pem.clone().into_bytes()),
            (CA_KEY_KEY, material.key_pem.clone().into_bytes()),
            (tls_keys::CRL, material.crl_der.clone()),
        ],
    )
}

/// Reads the CA material back from a stored `<gw>-ca`.
pub fn read_ca(secret: &Secret) -> Option<CaMaterial> {
    Some(CaMaterial {
        cert_pem: text(secret, CA_CERT_KEY)?,
        key_pem: text(secret, CA_KEY_KEY)?,
        crl_der: bytes(secret, tls_keys::CRL)?,
    })
}

/// Reads the TLS material back from a stored TLS Secret (ours, cert-manager's or the user's).
pub fn read_tls(secret: &Secret) -> Option<TlsMaterial> {
    Some(TlsMaterial {
        chain_pem: text(secret, tls_keys::CERT)?,
        key_pem: text(secret, tls_keys::KEY)?,
        ca_pem: text(secret, tls_keys::CA),
        crl_der: bytes(secret, tls_keys::CRL),
    })
}

/// Secret `<user>-credentials` with a generated password, owned by the user.
pub fn credentials_secret(
    namespace: &str,
    name: &str,
    owner: OwnerReference,
    password: &str,
) -> Secret {
    let meta = ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(
            [(
                super::MANAGED_BY_LABEL.to_owned(),
                crate::FIELD_MANAGER.to_owned(),
            )]
            .into(),
        ),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    };
    secret(
        meta,
        "Opaque",
        [(sstp_api::user::PASSWORD_KEY, password.as_bytes().to_vec())],
    )
}

/// The value of `key` as bytes.
pub fn bytes(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .map(|value| value.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|data| data.get(key))
                .map(|value| value.clone().into_bytes())
        })
}

/// The value of `key` as UTF-8 text.
pub fn text(secret: &Secret, key: &str) -> Option<String> {
    String::from_utf8(bytes(secret, key)?).ok()
}

fn secret<'a>(
    metadata: ObjectMeta,
    type_: &str,
    data: impl IntoIterator<Item = (&'a str, Vec<u8>)>,
) -> Secret {
    let data: BTreeMap<String, ByteString> = data
        .into_iter()
        .map(|(key, value)| (key.to_owned(), ByteString(value)))
        .collect();
    Secret {
        metadata,
        type_: Some(type_.to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// Key of the CA certificate in `<gw>-ca`.
pub const CA_CERT_KEY: &str = "ca.crt";
/// Key of the CA private key in `<gw>-ca`.
pub const CA_KEY_KEY: &str = "ca.key";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures;

    #[test]
    fn tls_and_ca_secrets_read_back_what_was_written() {
        let owner = Owner::of(&fixtures::minimal()).unwrap();
        let tls = TlsMaterial {
            chain_pem: "chain".into(),
            key_pem: "key".into(),
            ca_pem: Some("ca".into()),
            crl_der: Some(vec![1, 2]),
        };
        let secret = tls_secret(&owner, &tls);
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(read_tls(&secret), Some(tls));
        let ca = CaMaterial {
            cert_pem: "c".into(),
            key_pem: "k".into(),
            crl_der: vec![3],
        };
        assert_eq!(read_ca(&ca_secret(&owner, &ca)), Some(ca));
        assert!(!format!("{:?}", read_tls(&secret)).contains("key\""));
    }

    #[test]
    fn the_users_secret_holds_the_document_as_users_json() {
        let owner = Owner::of(&fixtures::minimal()).unwrap();
        let secret = users_secret(&owner, &UsersDocument::new());
        let text = text(&secret, "users.json").unwrap();
        assert_eq!(
            UsersDocument::from_json(&text).unwrap(),
            UsersDocument::new()
        );
        assert_eq!(secret.metadata.name.as_deref(), Some("gw-users"));
    }
}
