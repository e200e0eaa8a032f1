//! The gateway with the project's own client on loopback, inside a network namespace per test:
//! many concurrent sessions with traffic, user lifecycle, authentication and throttling, and
//! certificate reload, and the admin port's list of sessions. Run as root:
//! `cargo test -p sstp-gateway --test sessions`.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::Duration,
};

use common::{
    Harness, USERS, http_get, in_new_netns, ping, replace_file, runtime, start, users_document,
};
use rustls::pki_types::pem::PemObject;
use sstp_gateway::client::{Client, ClientError};
use sstp_proto::CloseReason;
use tokio::sync::Semaphore;

const SESSIONS: usize = 200;

#[test]
fn two_hundred_sessions_get_distinct_addresses_carry_traffic_and_give_the_pool_back() {
    in_new_netns("many_sessions", || {
        runtime().block_on(async {
            let h = Arc::new(start("many", |_| {}).await);
            let (name, password) = USERS[2];
            // Connect at most 50 at a time: the point is 200 concurrent sessions, not a
            // handshake storm on two cores.
            let gate = Arc::new(Semaphore::new(50));
            let mut tasks = Vec::new();
            for i in 0..SESSIONS {
                let (h, gate) = (Arc::clone(&h), Arc::clone(&gate));
                tasks.push(tokio::spawn(async move {
                    let permit = gate.acquire_owned().await.unwrap();
                    let (mut client, addr) = h.connect(name, password).await;
                    drop(permit);
                    let id = u16::try_from(i).unwrap();
                    let payload = format!("session {i} says hello through {addr}");
                    ping(&mut client, addr, h.gateway_ip(), id, payload.as_bytes()).await;
                    (client, addr)
                }));
            }
            let mut clients = Vec::new();
            for task in tasks {
                clients.push(task.await.unwrap());
            }
            let addresses: HashSet<Ipv4Addr> = clients.iter().map(|(_, a)| *a).collect();
            assert_eq!(addresses.len(), SESSIONS, "an address was given twice");
            let pool: ipnet::Ipv4Net = "10.77.0.0/24".parse().unwrap();
            assert!(
                addresses
                    .iter()
                    .all(|a| pool.contains(a) && *a != h.gateway_ip())
            );
            let text = h.scrape().await;
            assert_eq!(
                common::metric(&text, "sstp_sessions_active"),
                SESSIONS as f64
            );
            assert_eq!(
                common::metric(&text, r#"sstp_address_pool_addresses{state="allocated"}"#),
                SESSIONS as f64
            );
            // Every session's traffic again, all at once, while all 200 are up.
            let mut tasks = Vec::new();
            for (i, (mut client, addr)) in clients.into_iter().enumerate() {
                let h = Arc::clone(&h);
                tasks.push(tokio::spawn(async move {
                    let id = 1000 + u16::try_from(i).unwrap();
                    ping(&mut client, addr, h.gateway_ip(), id, &addr.octets()).await;
                    client.disconnect().await
                }));
            }
            for task in tasks {
                let reason = task.await.unwrap();
                assert_eq!(reason, CloseReason::LocalDisconnect);
            }
            common::wait_for_metric(&h, r#"sstp_address_pool_addresses{state="allocated"}"#, 0.0)
                .await;
            common::wait_for_metric(&h, "sstp_sessions_active", 0.0).await;
            let text = h.scrape().await;
            assert_eq!(
                common::metric(&text, r#"sstp_address_pool_addresses{state="free"}"#),
                253.0
            );
            assert_eq!(
                common::metric(&text, r#"sstp_sessions_total{result="established"}"#),
                SESSIONS as f64
            );
            assert!(
                common::metric(&text, r#"sstp_packets_total{direction="from_client"}"#) >= 400.0
            );
            assert!(common::metric(&text, r#"sstp_packets_total{direction="to_client"}"#) >= 400.0);
        });
    });
}

/// `/sessions` on the admin port, parsed.
async fn listed(h: &Harness) -> Vec<serde_json::Value> {
    let body = http_get(h.gateway.admin_addr, "/sessions").await;
    let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
    parsed["sessions"].as_array().cloned().unwrap()
}

/// Asks `/sessions` until `done` holds for the list, for at most 10 s (a bound, not a
/// measurement: the list changes with the session tasks).
async fn listed_until(
    h: &Harness,
    what: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    for _ in 0..200 {
        let sessions = listed(h).await;
        if done(&sessions) {
            return sessions;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: {:#?}", listed(h).await)
}

#[test]
fn the_admin_port_lists_the_established_sessions_with_their_traffic() {
    in_new_netns("sessions_list", || {
        runtime().block_on(async {
            let h = start("list", |_| {}).await;
            assert!(listed(&h).await.is_empty());
            let (mut alice, alice_addr) = h.connect(USERS[0].0, USERS[0].1).await;
            let (mut bob, bob_addr) = h.connect(USERS[1].0, USERS[1].1).await;
            ping(
                &mut alice,
                alice_addr,
                h.gateway_ip(),
                1,
                b"counted both ways",
            )
            .await;
            ping(&mut bob, bob_addr, h.gateway_ip(), 2, b"bob").await;
            let at = |address: Ipv4Addr| {
                move |s: &serde_json::Value| s["tunnel_address"] == address.to_string()
            };
            let sessions = listed_until(&h, "both sessions, with the pings counted", |s| {
                s.len() == 2
                    && s.iter().all(|s| {
                        s["bytes_from_client"].as_u64() > Some(0)
                            && s["bytes_to_client"].as_u64() > Some(0)
                    })
            })
            .await;
            let alice_entry = sessions.iter().find(|s| at(alice_addr)(s)).unwrap();
            assert_eq!(alice_entry["client"], alice.local_addr().to_string());
            // This harness runs with ServeOptions::default(), which leaves user names out (the
            // CLI names them unless --audit-omit-user-names): the list follows the audit setting.
            assert_eq!(
                alice_entry["user"],
                serde_json::Value::Null,
                "{alice_entry}"
            );
            assert!(
                alice_entry["since"]
                    .as_str()
                    .is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok()),
                "{alice_entry}"
            );
            let bob_entry = sessions.iter().find(|s| at(bob_addr)(s)).unwrap();
            assert_eq!(bob_entry["client"], bob.local_addr().to_string());
            // No credential of any kind.
            let text = serde_json::to_string(&sessions).unwrap();
            assert!(
                !text.contains(USERS[0].1) && !text.contains(USERS[1].1),
                "{text}"
            );

            alice.disconnect().await;
            let left = listed_until(&h, "alice gone", |s| s.len() == 1).await;
            assert!(at(bob_addr)(&left[0]), "{left:?}");
        });
    });
}

#[test]
fn removing_a_user_from_the_file_ends_their_session_within_two_seconds() {
    in_new_netns("remove_user", || {
        runtime().block_on(async {
            let h = start("remove", |_| {}).await;
            let (mut alice, _) = h.connect(USERS[0].0, USERS[0].1).await;
            let (mut bob, bob_addr) = h.connect(USERS[1].0, USERS[1].1).await;
            replace_file(
                &h.users_file,
                users_document(&USERS[1..]).to_json_pretty().as_bytes(),
            );
            let reason = tokio::time::timeout(Duration::from_secs(2), alice.closed())
                .await
                .expect("alice's session ended within 2 s");
            assert!(
                matches!(reason, CloseReason::Ppp(_) | CloseReason::PeerDisconnected),
                "{reason:?}"
            );
            // Bob is untouched.
            ping(&mut bob, bob_addr, h.gateway_ip(), 7, b"still here").await;
            // And alice can no longer log in.
            let mut again = Client::connect(h.options(USERS[0].0, USERS[0].1))
                .await
                .unwrap();
            // Told like a wrong password: a removed user is not revealed.
            match again.wait_up().await {
                Err(ClientError::AuthFailed(message)) => {
                    assert!(message.starts_with("E=691 R=0 C="), "{message}")
                }
                other => panic!("expected an authentication Failure, got {other:?}"),
            }
        });
    });
}

#[test]
fn a_users_file_with_a_syntax_error_keeps_the_last_good_document() {
    in_new_netns("parse_error", || {
        runtime().block_on(async {
            let h = start("parse", |_| {}).await;
            replace_file(
                &h.users_file,
                b"{\n  \"version\": 1,\n  \"users\": {\n    oops\n}\n",
            );
            common::wait_for_metric_at_least(&h, r#"sstp_users_reload_total{result="error"}"#, 1.0)
                .await;
            let (mut alice, addr) = h.connect(USERS[0].0, USERS[0].1).await;
            ping(&mut alice, addr, h.gateway_ip(), 1, b"last good document").await;
            assert_eq!(
                common::metric(&h.scrape().await, "sstp_users_loaded"),
                USERS.len() as f64
            );
        });
    });
}

#[test]
fn a_wrong_password_is_refused_and_counted() {
    in_new_netns("wrong_password", || {
        runtime().block_on(async {
            let h = start("wrongpw", |_| {}).await;
            let mut client = Client::connect(h.options(USERS[0].0, "not-the-password"))
                .await
                .unwrap();
            let err = client.wait_up().await.unwrap_err();
            // What Windows shows as error 691: E=691, no retry, a new challenge (RFC 2759 §6).
            match &err {
                ClientError::AuthFailed(message) => {
                    assert!(message.starts_with("E=691 R=0 C="), "{message}");
                    assert!(
                        message.ends_with(" V=3 M=Authentication failed"),
                        "{message}"
                    );
                }
                other => panic!("expected an authentication Failure, got {other:?}"),
            }
            let text = h.scrape().await;
            assert_eq!(
                common::metric(
                    &text,
                    r#"sstp_auth_failures_total{reason="bad_credentials"}"#
                ),
                1.0
            );
            // Counted when the connection has closed, which may be just after the client saw
            // the Failure.
            common::wait_for_metric(&h, r#"sstp_sessions_total{result="auth_failed"}"#, 1.0).await;
        });
    });
}

/// Ten wrong guesses from 127.0.0.1 block alice from there, even with the right password;
/// alice from 127.0.0.2 still gets in.
#[test]
fn after_ten_failures_the_pair_is_throttled_but_the_user_from_another_source_gets_in() {
    in_new_netns("throttle", || {
        runtime().block_on(async {
            let h = start("throttle", |_| {}).await;
            let attacker: IpAddr = "127.0.0.1".parse().unwrap();
            let office: IpAddr = "127.0.0.2".parse().unwrap();
            for _ in 0..10 {
                let options = common::from_source(h.options(USERS[0].0, "guess"), attacker);
                let mut client = Client::connect(options).await.unwrap();
                assert!(client.wait_up().await.is_err());
            }
            let options = common::from_source(h.options(USERS[0].0, USERS[0].1), attacker);
            let mut blocked = Client::connect(options).await.unwrap();
            assert!(
                blocked.wait_up().await.is_err(),
                "throttled despite the right password"
            );
            let text = h.scrape().await;
            assert_eq!(
                common::metric(
                    &text,
                    r#"sstp_auth_failures_total{reason="bad_credentials"}"#
                ),
                10.0
            );
            assert_eq!(
                common::metric(&text, r#"sstp_auth_failures_total{reason="throttled"}"#),
                1.0
            );
            let options = common::from_source(h.options(USERS[0].0, USERS[0].1), office);
            let mut alice = Client::connect(options).await.unwrap();
            let addr = alice.wait_up().await.unwrap();
            ping(&mut alice, addr, h.gateway_ip(), 3, b"the real alice").await;
        });
    });
}

/// Replacing the certificate files makes new connections get (and bind to) the new leaf,
/// while an established session keeps running on the old one.
#[test]
fn a_replaced_certificate_serves_new_connections_and_the_established_session_stays() {
    in_new_netns("cert_reload", || {
        runtime().block_on(async {
            let h: Harness = start("certreload", |_| {}).await;
            let (mut old, old_addr) = h.connect(USERS[0].0, USERS[0].1).await;
            let old_hash = old.server_cert().clone();
            let pki = h.dir.0.join("pki");
            reissue_server_cert(&pki);
            let mut new_hash = None;
            for _ in 0..50 {
                let (mut probe, addr) = h.connect(USERS[1].0, USERS[1].1).await;
                if *probe.server_cert() != old_hash {
                    ping(&mut probe, addr, h.gateway_ip(), 11, b"new certificate").await;
                    new_hash = Some(probe.server_cert().clone());
                    break;
                }
                probe.disconnect().await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            assert!(new_hash.is_some(), "the new certificate was never served");
            ping(&mut old, old_addr, h.gateway_ip(), 12, b"old certificate").await;
        });
    });
}

/// Issues a new server certificate (new key) from the test CA and swaps both files in.
fn reissue_server_cert(pki: &std::path::Path) {
    use sstp_gateway::pki::{CertificateAuthority, KeyAlgorithm, ServerCertRequest};
    let ca = CertificateAuthority::from_pem(
        &std::fs::read_to_string(pki.join("ca.crt")).unwrap(),
        &std::fs::read_to_string(pki.join("ca.key")).unwrap(),
    )
    .unwrap();
    let issued = ca
        .issue_server_cert(&ServerCertRequest {
            hostnames: vec!["localhost".into()],
            not_before: time::OffsetDateTime::now_utc() - time::Duration::minutes(5),
            validity: time::Duration::days(30),
            algorithm: KeyAlgorithm::EcdsaP256,
        })
        .unwrap();
    // Key first, then the chain: the reloader must wait for a matching pair.
    replace_file(&pki.join("server.key"), issued.key_pem.as_bytes());
    replace_file(&pki.join("server.crt"), issued.chain_pem.as_bytes());
}

/// An RSA key with its full chain (leaf + CA) from files, served to a client that speaks only
/// TLS 1.2: the tunnel comes up and carries traffic.
#[test]
fn an_rsa_certificate_chain_from_files_works_over_tls_1_2() {
    in_new_netns("rsa_tls12", || {
        runtime().block_on(async {
            use sstp_api::gateway_config::{TlsConfig, TlsFiles};
            use sstp_gateway::pki::{
                CertificateAuthority, KeyAlgorithm, RsaBits, ServerCertRequest,
            };
            let files = common::TestDir::new("rsa-files");
            let now = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
            let ca = CertificateAuthority::generate(
                "test RSA CA",
                now,
                time::Duration::days(30),
                KeyAlgorithm::Rsa(RsaBits::Rsa2048),
            )
            .unwrap();
            let issued = ca
                .issue_server_cert(&ServerCertRequest {
                    hostnames: vec!["localhost".into()],
                    not_before: now,
                    validity: time::Duration::days(30),
                    algorithm: KeyAlgorithm::Rsa(RsaBits::Rsa2048),
                })
                .unwrap();
            assert!(
                issued.chain_pem.matches("BEGIN CERTIFICATE").count() >= 2,
                "full chain"
            );
            let path = |name: &str| files.0.join(name);
            std::fs::write(path("tls.crt"), &issued.chain_pem).unwrap();
            std::fs::write(path("tls.key"), &issued.key_pem).unwrap();
            std::fs::write(path("ca.crt"), ca.cert_pem()).unwrap();
            let tls = TlsConfig::Files(TlsFiles {
                cert_file: path("tls.crt"),
                key_file: path("tls.key"),
                ca_file: Some(path("ca.crt")),
                crl_file: None,
            });
            let h = start("rsatls12", move |c| c.tls = tls).await;
            let mut options = h.options(USERS[0].0, USERS[0].1);
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(
                rustls::pki_types::CertificateDer::pem_slice_iter(&h.ca_pem).map(Result::unwrap),
            );
            options.tls = Arc::new(
                rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            );
            let mut client = Client::connect(options).await.unwrap();
            let addr = client.wait_up().await.unwrap();
            ping(&mut client, addr, h.gateway_ip(), 21, b"rsa over tls 1.2").await;
        });
    });
}
