//! Compiling `SstpUser`s into the users document a gateway loads: the selected, enabled,
//! unexpired users, each with the NT hash of their password. Pure: the passwords and the time
//! are inputs.

use std::{collections::BTreeSet, net::Ipv4Addr};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{
    ResourceExt,
    core::{Selector, SelectorExt},
};
use sstp_api::{SstpUser, UserEntry, UsersDocument, user::PasswordSecretRef, users::NtHashHex};
use sstp_ppp::NtHash;

/// Why a selected user was left out of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// The password Secret or key does not exist (yet).
    PasswordMissing,
    /// Another user (earlier by object name) has the same login name.
    DuplicateName,
    /// Another user (earlier by object name) has the same static address, or it is unusable.
    BadStaticAddress,
}

/// The compiled document, and the selected users that were left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// The users document.
    pub document: UsersDocument,
    /// Object names of users left out, with why.
    pub skipped: Vec<(String, Skipped)>,
    /// The earliest future expiry among included users: when the document must be recompiled.
    pub next_expiry: Option<Timestamp>,
}

/// Whether `selector` (absent: everything) selects `user`.
pub fn selects(selector: Option<&LabelSelector>, user: &SstpUser) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    match Selector::try_from(selector.clone()) {
        Ok(selector) => selector.matches(user.labels()),
        // An unparsable selector selects nothing rather than everything.
        Err(_) => false,
    }
}

/// Compiles `users` (all users of the namespace) for a gateway with `selector` at `now`.
/// `password` returns the plaintext for a reference, or `None` when it cannot be read.
pub fn compile(
    selector: Option<&LabelSelector>,
    users: &[SstpUser],
    password: impl Fn(&PasswordSecretRef) -> Option<String>,
    now: Timestamp,
) -> Compiled {
    let mut sorted: Vec<&SstpUser> = users
        .iter()
        .filter(|user| user.metadata.deletion_timestamp.is_none() && selects(selector, user))
        .collect();
    sorted.sort_by_key(|user| user.name_any());
    let mut document = UsersDocument::new();
    let mut skipped = Vec::new();
    let mut addresses: BTreeSet<Ipv4Addr> = BTreeSet::new();
    let mut next_expiry: Option<Timestamp> = None;
    for user in sorted {
        let expires_at = user.spec.expires_at.as_ref().map(|time| time.0);
        if user.spec.disabled || expires_at.is_some_and(|at| at <= now) {
            continue;
        }
        let name = user.login_name();
        if document.users.contains_key(&name) {
            skipped.push((user.name_any(), Skipped::DuplicateName));
            continue;
        }
        let static_address = match user.spec.static_address.as_deref().map(str::parse) {
            None => None,
            Some(Ok(address)) if addresses.insert(address) => Some(address),
            Some(_) => {
                skipped.push((user.name_any(), Skipped::BadStaticAddress));
                continue;
            }
        };
        let Some(plaintext) = password(&user.password_ref()) else {
            skipped.push((user.name_any(), Skipped::PasswordMissing));
            continue;
        };
        let mut entry = UserEntry::new(NtHashHex::from_bytes(NtHash::from_password(&plaintext).0));
        entry.static_address = static_address;
        entry.max_sessions = user.spec.max_sessions.and_then(|n| u32::try_from(n).ok());
        entry.expires_at = expires_at;
        entry.groups = user.spec.groups.clone();
        if let Some(at) = expires_at {
            next_expiry = Some(next_expiry.map_or(at, |next| next.min(at)));
        }
        document.users.insert(name, entry);
    }
    Compiled {
        document,
        skipped,
        next_expiry,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use sstp_api::SstpUserSpec;

    use super::*;

    fn user(name: &str, spec: serde_json::Value, labels: &[(&str, &str)]) -> SstpUser {
        SstpUser {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: serde_json::from_value::<SstpUserSpec>(spec).unwrap(),
            status: None,
        }
    }

    fn password(reference: &PasswordSecretRef) -> Option<String> {
        (reference.name != "missing").then(|| format!("pw-of-{}", reference.name))
    }

    fn now() -> Timestamp {
        "2030-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn enabled_selected_users_get_the_nt_hash_of_their_password() {
        let users = [
            user(
                "alice",
                serde_json::json!({"passwordSecretRef": {"name": "a"}}),
                &[("team", "x")],
            ),
            user(
                "bob",
                serde_json::json!({"username": "Bob", "staticAddress": "10.8.0.9", "groups": ["ops"]}),
                &[("team", "x")],
            ),
            user("carol", serde_json::json!({}), &[("team", "y")]),
        ];
        let selector: LabelSelector =
            serde_json::from_value(serde_json::json!({"matchLabels": {"team": "x"}})).unwrap();
        let compiled = compile(Some(&selector), &users, password, now());
        let names: Vec<_> = compiled.document.users.keys().cloned().collect();
        assert_eq!(names, ["Bob", "alice"]);
        let alice = &compiled.document.users["alice"];
        assert_eq!(
            alice.nt_hash.to_bytes(),
            Some(NtHash::from_password("pw-of-a").0)
        );
        let bob = &compiled.document.users["Bob"];
        assert_eq!(
            bob.nt_hash.to_bytes(),
            Some(NtHash::from_password("pw-of-bob-credentials").0)
        );
        assert_eq!(bob.static_address, Some(Ipv4Addr::new(10, 8, 0, 9)));
        assert_eq!(bob.groups, ["ops"]);
        compiled.document.validate().unwrap();
        assert!(!compiled.document.to_json_pretty().contains("pw-of"));
    }

    #[test]
    fn disabled_and_expired_users_are_left_out_and_the_next_expiry_is_reported() {
        let mut expired = user("old", serde_json::json!({}), &[]);
        expired.spec.expires_at = Some(Time("2029-01-01T00:00:00Z".parse().unwrap()));
        let mut later = user("later", serde_json::json!({}), &[]);
        later.spec.expires_at = Some(Time("2031-01-01T00:00:00Z".parse().unwrap()));
        let users = [
            user("off", serde_json::json!({"disabled": true}), &[]),
            expired,
            later,
        ];
        let compiled = compile(None, &users, password, now());
        let names: Vec<_> = compiled.document.users.keys().cloned().collect();
        assert_eq!(names, ["later"]);
        assert_eq!(
            compiled.next_expiry,
            Some("2031-01-01T00:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn missing_passwords_duplicate_names_and_addresses_are_skipped_not_fatal() {
        let users = [
            user(
                "a",
                serde_json::json!({"username": "same", "staticAddress": "10.8.0.5"}),
                &[],
            ),
            user("b", serde_json::json!({"username": "same"}), &[]),
            user("c", serde_json::json!({"staticAddress": "10.8.0.5"}), &[]),
            user(
                "d",
                serde_json::json!({"passwordSecretRef": {"name": "missing"}}),
                &[],
            ),
        ];
        let compiled = compile(None, &users, password, now());
        assert_eq!(compiled.document.users.len(), 1);
        assert_eq!(
            compiled.skipped,
            [
                ("b".to_owned(), Skipped::DuplicateName),
                ("c".to_owned(), Skipped::BadStaticAddress),
                ("d".to_owned(), Skipped::PasswordMissing)
            ]
        );
        compiled.document.validate().unwrap();
    }
}
