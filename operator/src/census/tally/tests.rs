use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sstp_api::{SstpGatewayStatus, SstpUserSpec, SstpUserStatus};

use super::*;
use crate::resources::fixtures;

fn gateway(name: &str, stored: Option<i32>, omit_user_names: bool) -> SstpGateway {
    let mut gw = fixtures::gateway(serde_json::json!({
        "hostnames": ["vpn.example.com"],
        "addressPool": "10.8.0.0/24",
        "logging": {"omitUserNames": omit_user_names},
    }));
    gw.metadata.name = Some(name.into());
    gw.status = stored.map(|count| SstpGatewayStatus {
        active_sessions: Some(count),
        ..SstpGatewayStatus::default()
    });
    gw
}

fn user(name: &str, login: Option<&str>, gateways: &[&str], stored: Option<i32>) -> SstpUser {
    let spec: SstpUserSpec = serde_json::from_value(serde_json::json!({
        "username": login,
    }))
    .unwrap();
    SstpUser {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            ..ObjectMeta::default()
        },
        spec,
        status: Some(SstpUserStatus {
            gateways: gateways.iter().map(|gw| (*gw).to_owned()).collect(),
            active_sessions: stored,
            ..SstpUserStatus::default()
        }),
    }
}

fn pod(gateway: &str, sessions: Option<&[Option<&str>]>) -> PodReport {
    PodReport {
        namespace: "ns".into(),
        gateway: gateway.into(),
        sessions: sessions.map(|users| users.iter().map(|user| user.map(str::to_owned)).collect()),
    }
}

fn write(name: &str, count: Option<i32>) -> Write {
    Write {
        namespace: "ns".into(),
        name: name.into(),
        count,
    }
}

#[test]
fn sessions_on_every_pod_are_summed_per_gateway_and_per_user() {
    let (a, b) = (gateway("a", None, false), gateway("b", Some(1), false));
    let alice = user("alice", None, &["a", "b"], None);
    let bob = user("bob-object", Some("bob"), &["a"], Some(5));
    let pods = [
        pod("a", Some(&[Some("alice"), Some("bob")])),
        pod("a", Some(&[Some("alice")])),
        pod("b", Some(&[Some("alice"), Some("carol")])),
    ];
    let writes = tally(&[&a, &b], &[&alice, &bob], &pods);
    assert_eq!(
        writes,
        Writes {
            gateways: vec![write("a", Some(3)), write("b", Some(2))],
            // alice logs in by her object's name; bob by his username.
            users: vec![write("alice", Some(3)), write("bob-object", Some(1))],
        }
    );
}

#[test]
fn nothing_changed_means_no_write_also_for_objects_never_counted() {
    let a = gateway("a", Some(2), false);
    let idle = gateway("idle", None, false);
    let alice = user("alice", None, &["a"], Some(2));
    let nobody = user("nobody", None, &["idle"], None);
    let pods = [
        pod("a", Some(&[Some("alice")])),
        pod("a", Some(&[Some("alice")])),
    ];
    assert_eq!(
        tally(&[&a, &idle], &[&alice, &nobody], &pods),
        Writes::default()
    );
}

#[test]
fn a_gateway_with_a_pod_of_unknown_sessions_is_left_alone_for_the_round() {
    let a = gateway("a", Some(4), false);
    let b = gateway("b", Some(4), false);
    let on_a = user("alice", None, &["a"], Some(1));
    let on_b = user("bob", None, &["b"], Some(1));
    let pods = [
        pod("a", Some(&[])),
        pod("a", None),
        pod("b", Some(&[Some("carol")])),
    ];
    assert_eq!(
        tally(&[&a, &b], &[&on_a, &on_b], &pods),
        Writes {
            gateways: vec![write("b", Some(1))],
            users: vec![write("bob", Some(0))],
        }
    );
}

#[test]
fn a_gateway_that_lost_every_pod_counts_zero_once_it_had_a_count() {
    let a = gateway("a", Some(3), false);
    let alice = user("alice", None, &["a"], Some(3));
    assert_eq!(
        tally(&[&a], &[&alice], &[]),
        Writes {
            gateways: vec![write("a", Some(0))],
            users: vec![write("alice", Some(0))],
        }
    );
}

#[test]
fn users_of_a_gateway_that_omits_user_names_have_no_count() {
    let a = gateway("a", Some(1), true);
    let counted_before = user("alice", None, &["a"], Some(1));
    let never_counted = user("bob", None, &["a"], None);
    let pods = [pod("a", Some(&[None, None]))];
    assert_eq!(
        tally(&[&a], &[&counted_before, &never_counted], &pods),
        Writes {
            gateways: vec![write("a", Some(2))],
            users: vec![write("alice", None)],
        }
    );
}

#[test]
fn pods_of_gateways_not_in_the_store_and_users_of_deleted_gateways_are_ignored() {
    let alice = user("alice", None, &["gone"], None);
    let pods = [pod("gone", Some(&[Some("alice")])), pod("gone", None)];
    assert_eq!(tally(&[], &[&alice], &pods), Writes::default());
}
