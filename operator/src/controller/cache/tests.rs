//! What the stores keep of an object.

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString,
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta},
};

use super::trimmed_secret;

fn secret(type_: Option<&str>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some("s".into()),
            managed_fields: Some(vec![ManagedFieldsEntry::default()]),
            ..ObjectMeta::default()
        },
        type_: type_.map(str::to_owned),
        data: Some(BTreeMap::from([(
            "password".into(),
            ByteString(b"pw".to_vec()),
        )])),
        ..Secret::default()
    }
}

#[test]
fn a_small_opaque_secret_keeps_its_data_and_every_other_only_its_metadata() {
    for (type_, keeps_data) in [
        (None, true),
        (Some("Opaque"), true),
        (Some("helm.sh/release.v1"), false),
        (Some("kubernetes.io/tls"), false),
        (Some("kubernetes.io/service-account-token"), false),
    ] {
        let mut stored = secret(type_);
        trimmed_secret(&mut stored);
        assert_eq!(stored.data.is_some(), keeps_data, "{type_:?}");
        assert_eq!(stored.metadata.name.as_deref(), Some("s"));
        assert!(stored.metadata.managed_fields.is_none(), "{type_:?}");
    }
}

#[test]
fn an_opaque_secret_larger_than_a_password_secret_is_kept_without_its_data() {
    let mut big = secret(None);
    big.data.as_mut().unwrap().insert(
        "users.json".into(),
        ByteString(vec![b'x'; super::CACHED_SECRET_DATA]),
    );
    trimmed_secret(&mut big);
    assert!(big.data.is_none());
    let mut at_the_limit = secret(None);
    let room = super::CACHED_SECRET_DATA - "password".len();
    at_the_limit
        .data
        .as_mut()
        .unwrap()
        .insert("password".into(), ByteString(vec![b'x'; room]));
    trimmed_secret(&mut at_the_limit);
    assert!(at_the_limit.data.is_some());
}
