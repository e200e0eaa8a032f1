//! Records a whole client session against the `server_session` fuzz target's fixed server, so
//! the fuzzer starts from a stream that reaches the connected state (its challenge and nonce
//! are deterministic, so the recorded answers stay valid on replay).

use std::time::Instant;

use super::{client_config, ipv4_packet, rng};
use crate::{CertHashes, ClientConnection, ClientEvent, ServerEvent, fuzzing};

#[test]
#[ignore = "rewrites gateway/fuzz/corpus/server_session/full_session; run by hand after protocol changes"]
fn record_a_full_session_seed_for_the_server_session_fuzz_target() {
    let now = Instant::now();
    let mut server = fuzzing::session::server(now);
    let mut config = client_config("alice", "password");
    config.host = "fuzz".to_owned();
    config.correlation_id = None;
    let mut client = ClientConnection::new(config, CertHashes::from_der(b"fuzz"), rng(5), now);
    let mut recorded = Vec::new();
    let mut server_events = Vec::new();
    let mut sent_data = false;
    for _ in 0..1000 {
        let mut bytes = Vec::new();
        client.poll_transmit(&mut bytes);
        recorded.extend_from_slice(&bytes);
        server.handle_input(now, &bytes);
        let mut back = Vec::new();
        server.poll_transmit(&mut back);
        client.handle_input(now, &back);
        while let Some(event) = server.poll_event() {
            server_events.push(event);
        }
        while let Some(event) = client.poll_event() {
            if let ClientEvent::Ipv4Up { local, .. } = event {
                let packet = ipv4_packet(local, std::net::Ipv4Addr::new(10, 0, 0, 1), 64);
                client.send_ip(&packet).unwrap();
                sent_data = true;
            }
        }
        if sent_data && bytes.is_empty() && back.is_empty() {
            break;
        }
    }
    client.disconnect(now);
    let mut bytes = Vec::new();
    client.poll_transmit(&mut bytes);
    recorded.extend_from_slice(&bytes);
    assert!(
        server_events
            .iter()
            .any(|e| matches!(e, ServerEvent::Connected { .. }))
    );

    let mut seed = vec![0, 255];
    seed.extend_from_slice(&recorded);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/corpus/server_session/full_session"
    );
    std::fs::write(path, seed).unwrap();
}
