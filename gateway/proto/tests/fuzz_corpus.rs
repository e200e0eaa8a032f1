//! Replays every committed seed under `gateway/fuzz/corpus/<target>/` through the matching
//! fuzz target body, so CI on stable catches a seed that starts to panic.

use std::path::PathBuf;

use sstp_proto::fuzzing;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()));
    let mut count = 0;
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let data = std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        run(&data);
        count += 1;
    }
    assert!(count > 0, "no seeds in {}", dir.display());
}

#[test]
fn every_deframer_seed_replays_without_panicking() {
    replay("sstp_deframer", fuzzing::sstp_deframer);
}

#[test]
fn every_control_seed_replays_without_panicking() {
    replay("sstp_control", fuzzing::sstp_control);
}

#[test]
fn every_http_preamble_seed_replays_without_panicking() {
    replay("http_preamble", fuzzing::http_preamble);
}

#[test]
fn every_server_session_seed_replays_without_panicking() {
    replay("server_session", fuzzing::server_session);
}

#[test]
fn every_proxy_header_seed_replays_without_panicking() {
    replay("proxy_header", fuzzing::proxy_header);
}

#[test]
fn every_client_hello_seed_replays_without_panicking() {
    replay("client_hello", fuzzing::client_hello);
}
