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
fn an_opaque_secret_keeps_its_data_and_every_other_type_only_its_metadata() {
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
