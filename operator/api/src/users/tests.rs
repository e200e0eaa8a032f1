use super::*;

/// NT hash of "password" (a well-known value, used only as a test fixture).
const HASH: &str = "8846f7eaee8fb117ad06bdd830b7586c";

fn parse(text: &str) -> Result<UsersDocument, UsersDocumentError> {
    UsersDocument::from_json(text)
}

fn doc_with(users: &[(&str, &str)]) -> String {
    let entries: Vec<String> = users
        .iter()
        .map(|(name, body)| format!("{name:?}: {body}"))
        .collect();
    format!("{{\"version\": 1, \"users\": {{{}}}}}", entries.join(","))
}

#[test]
fn a_full_entry_parses_with_camel_case_keys() {
    let text = doc_with(&[(
        "alice",
        r#"{"ntHash": "8846F7EAEE8FB117AD06BDD830B7586C", "disabled": false,
            "staticAddress": "10.8.0.10", "maxSessions": 2,
            "expiresAt": "2030-01-01T00:00:00Z", "groups": ["staff"]}"#,
    )]);
    let doc = parse(&text).unwrap();
    let alice = &doc.users["alice"];
    assert_eq!(alice.static_address, Some(Ipv4Addr::new(10, 8, 0, 10)));
    assert_eq!(alice.max_sessions, Some(2));
    assert_eq!(alice.groups, vec!["staff".to_owned()]);
    assert_eq!(alice.nt_hash.to_bytes().unwrap()[0], 0x88);
}

#[test]
fn a_document_round_trips_through_its_pretty_json() {
    let mut doc = UsersDocument::new();
    let mut entry = UserEntry::new(NtHashHex(HASH.into()));
    entry.static_address = Some(Ipv4Addr::new(10, 8, 0, 9));
    entry.expires_at = Some("2030-01-01T00:00:00Z".parse().unwrap());
    doc.users.insert("bob".into(), entry);
    assert_eq!(parse(&doc.to_json_pretty()).unwrap(), doc);
}

#[test]
fn defaults_are_omitted_when_writing() {
    let mut doc = UsersDocument::new();
    doc.users
        .insert("bob".into(), UserEntry::new(NtHashHex(HASH.into())));
    let json = serde_json::to_string(&doc).unwrap();
    assert_eq!(
        json,
        format!(r#"{{"version":1,"users":{{"bob":{{"ntHash":"{HASH}"}}}}}}"#)
    );
}

#[test]
fn broken_json_names_line_and_column() {
    let err =
        parse("{\n  \"version\": 1,\n  \"users\": {\n    \"a\": { \"ntHash\": }\n").unwrap_err();
    let UsersDocumentError::Syntax { position, message } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(position.line, 4);
    assert_eq!(position.column, 22);
    assert!(!message.contains("at line"), "{message}");
    assert!(
        err.to_string()
            .starts_with("invalid users document at line 4, column 22: ")
    );
}

#[test]
fn an_unknown_field_is_rejected_with_its_name() {
    let text = doc_with(&[("a", &format!(r#"{{"ntHash": "{HASH}", "password": "x"}}"#))]);
    let err = parse(&text).unwrap_err();
    assert!(
        err.to_string().contains("unknown field `password`"),
        "{err}"
    );
}

#[test]
fn a_newer_version_is_reported_as_a_version_problem_not_a_syntax_one() {
    let err = parse(r#"{"version": 2, "users": {}, "newThing": true}"#).unwrap_err();
    assert_eq!(err, UsersDocumentError::UnsupportedVersion { found: 2 });
    let err = parse(r#"{"version": 0}"#).unwrap_err();
    assert_eq!(err, UsersDocumentError::UnsupportedVersion { found: 0 });
}

#[test]
fn a_short_or_non_hex_hash_names_the_user() {
    for bad in [
        "8846f7eaee8fb117ad06bdd830b7586",
        "zz46f7eaee8fb117ad06bdd830b7586c",
        "",
        "é6f7eaee8fb117ad06bdd830b7586c",
    ] {
        let text = doc_with(&[("carol", &format!(r#"{{"ntHash": "{bad}"}}"#))]);
        let err = parse(&text).unwrap_err();
        let UsersDocumentError::InvalidEntry { user, problem } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(user, "carol");
        assert!(problem.contains("32 hex digits"), "{problem}");
    }
}

#[test]
fn bad_user_names_are_refused() {
    for name in ["", " alice", "bob ", "tab\there", "nl\n"] {
        let text = doc_with(&[(name, &format!(r#"{{"ntHash": "{HASH}"}}"#))]);
        let err = parse(&text).unwrap_err();
        assert!(
            matches!(err, UsersDocumentError::InvalidUserName { .. }),
            "{name:?}: {err:?}"
        );
    }
    let long = "x".repeat(257);
    let text = doc_with(&[(&long, &format!(r#"{{"ntHash": "{HASH}"}}"#))]);
    assert!(matches!(
        parse(&text),
        Err(UsersDocumentError::InvalidUserName { .. })
    ));
}

#[test]
fn names_with_domains_and_unicode_are_accepted() {
    let body = format!(r#"{{"ntHash": "{HASH}"}}"#);
    let text = doc_with(&[(r"CORP\alice", &body), ("zoë@example.com", &body)]);
    assert_eq!(parse(&text).unwrap().users.len(), 2);
}

#[test]
fn two_users_with_one_static_address_are_both_named() {
    let a = format!(r#"{{"ntHash": "{HASH}", "staticAddress": "10.8.0.5"}}"#);
    let err = parse(&doc_with(&[("dave", &a), ("erin", &a)])).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"users "dave" and "erin" both have static address 10.8.0.5"#
    );
}

#[test]
fn zero_max_sessions_and_empty_groups_are_refused() {
    let zero = format!(r#"{{"ntHash": "{HASH}", "maxSessions": 0}}"#);
    assert!(
        parse(&doc_with(&[("f", &zero)]))
            .unwrap_err()
            .to_string()
            .contains("maxSessions")
    );
    let group = format!(r#"{{"ntHash": "{HASH}", "groups": [""]}}"#);
    assert!(
        parse(&doc_with(&[("g", &group)]))
            .unwrap_err()
            .to_string()
            .contains("group")
    );
}

#[test]
fn an_expiry_without_offset_is_refused() {
    let body = format!(r#"{{"ntHash": "{HASH}", "expiresAt": "2030-01-01T00:00:00"}}"#);
    assert!(matches!(
        parse(&doc_with(&[("h", &body)])),
        Err(UsersDocumentError::Syntax { .. })
    ));
}

#[test]
fn a_user_is_active_until_expiry_and_never_when_disabled() {
    let mut entry = UserEntry::new(NtHashHex(HASH.into()));
    let expiry: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
    entry.expires_at = Some(expiry);
    assert!(entry.is_active_at("2029-12-31T23:59:59Z".parse().unwrap()));
    assert!(!entry.is_active_at(expiry));
    entry.expires_at = None;
    entry.disabled = true;
    assert!(!entry.is_active_at(expiry));
}

#[test]
fn the_hash_never_appears_in_debug_output() {
    let entry = UserEntry::new(NtHashHex(HASH.into()));
    assert!(!format!("{entry:?}").contains(HASH));
}

#[test]
fn hash_bytes_round_trip_through_hex() {
    let bytes: [u8; 16] = std::array::from_fn(|i| (i as u8).wrapping_mul(37));
    assert_eq!(NtHashHex::from_bytes(bytes).to_bytes(), Some(bytes));
}

#[test]
fn the_schema_names_the_camel_case_fields() {
    let schema = serde_json::to_string(&UsersDocument::json_schema()).unwrap();
    for field in ["ntHash", "staticAddress", "maxSessions", "expiresAt"] {
        assert!(schema.contains(field), "{field} missing from {schema}");
    }
}

#[test]
fn the_log_form_of_an_error_leaves_out_user_names() {
    let a = format!(r#"{{"ntHash": "{HASH}", "staticAddress": "10.8.0.5"}}"#);
    let err = parse(&doc_with(&[("dave", &a), ("erin", &a)])).unwrap_err();
    assert_eq!(
        err.without_user_names(),
        "two users both have static address 10.8.0.5"
    );
    let err = parse(&doc_with(&[("mallory", r#"{"ntHash": "00"}"#)])).unwrap_err();
    assert!(!err.without_user_names().contains("mallory"));
    assert!(err.without_user_names().contains("32 hex digits"));
    let err = parse(&doc_with(&[(" x", &format!(r#"{{"ntHash": "{HASH}"}}"#))])).unwrap_err();
    assert!(!err.without_user_names().contains(" x\""));
}
