use std::{
    io::Write,
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
};

use super::*;
use crate::session::SessionTable;

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The JSON lines `write` logs with the gateway's JSON format.
fn json_lines(write: impl FnOnce()) -> Vec<serde_json::Value> {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .json()
        .flatten_event(true)
        .finish();
    tracing::subscriber::with_default(subscriber, write);
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn config(user_names: bool) -> AuditConfig {
    AuditConfig {
        user_names,
        gateway: "gw-0".into(),
    }
}

const CLIENT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), 50123);
const TUNNEL: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

#[test]
fn a_session_writes_a_start_and_an_end_record_with_every_field() {
    let records = json_lines(|| {
        let config = config(true);
        let table = SessionTable::new();
        let open = OpenSession::start(&config, &table, 7, Some("alice"), CLIENT, TUNNEL);
        assert_eq!(table.len(), 1);
        let traffic = Traffic {
            bytes_from_client: 1000,
            packets_from_client: 10,
            bytes_to_client: 2000,
            packets_to_client: 20,
        };
        open.end(&config, 7, traffic, "peer_disconnected");
    });
    assert_eq!(records.len(), 2, "{records:?}");
    let (start, end) = (&records[0], &records[1]);
    for record in [start, end] {
        assert_eq!(record["target"], TARGET);
        assert_eq!(record["level"], "INFO");
        assert_eq!(record["session"], 7);
        assert_eq!(record["user"], "alice");
        assert_eq!(record["client"], "198.51.100.7:50123");
        assert_eq!(record["tunnel_address"], "10.77.0.2");
        assert_eq!(record["gateway"], "gw-0");
    }
    assert_eq!(start["event"], "session_start");
    assert_eq!(end["event"], "session_end");
    assert_eq!(end["start"], start["start"]);
    let parse = |value: &serde_json::Value| value.as_str().unwrap().parse::<jiff::Timestamp>();
    assert!(parse(&end["end"]).unwrap() >= parse(&start["start"]).unwrap());
    assert!(end["duration_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(end["bytes_from_client"], 1000);
    assert_eq!(end["packets_from_client"], 10);
    assert_eq!(end["bytes_to_client"], 2000);
    assert_eq!(end["packets_to_client"], 20);
    assert_eq!(end["reason"], "peer_disconnected");
}

#[test]
fn user_names_can_be_left_out_of_every_record() {
    let records = json_lines(|| {
        let config = config(false);
        let table = SessionTable::new();
        let open = OpenSession::start(&config, &table, 1, Some("alice"), CLIENT, TUNNEL);
        // The admin port's list leaves the name out too.
        assert!(
            table.to_json().contains(r#""user":null"#),
            "{}",
            table.to_json()
        );
        open.end(&config, 1, Traffic::default(), "idle_timeout");
        login_failed(&config, 2, Some("mallory"), CLIENT, "bad_credentials");
    });
    assert_eq!(records.len(), 3);
    for record in &records {
        assert!(record.get("user").is_none(), "{record}");
        let text = record.to_string();
        assert!(
            !text.contains("alice") && !text.contains("mallory"),
            "{text}"
        );
    }
    assert_eq!(records[2]["event"], "login_failed");
    assert_eq!(records[2]["reason"], "bad_credentials");
}

#[test]
fn a_hostile_user_name_stays_inside_its_json_string() {
    // Whatever bytes a client sends as its name, the record is still one parseable line.
    let records = json_lines(|| {
        login_failed(
            &config(true),
            3,
            Some("eve\n{\"event\":\"session_start\"}\u{1b}[31m"),
            CLIENT,
            "unknown_user",
        );
    });
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["event"], "login_failed");
    assert_eq!(
        records[0]["user"],
        "eve\n{\"event\":\"session_start\"}\u{1b}[31m"
    );
}
