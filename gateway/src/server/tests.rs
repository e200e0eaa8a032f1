//! The listening sockets, as the kernel reports them.

use std::{net::SocketAddr, process::Command};

use super::bind;

/// The accept-queue limit of the listener on 127.0.0.1:`port` (`ss` reports it as the
/// listening socket's Send-Q).
fn accept_queue_limit(port: u16) -> u32 {
    let output = Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) runs");
    let text = String::from_utf8(output.stdout).unwrap();
    let columns: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(columns.first(), Some(&"LISTEN"), "{text:?}");
    columns[2].parse().unwrap()
}

fn somaxconn() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_sstp_listener_queues_as_many_connections_as_its_backlog_says_up_to_somaxconn() {
    for backlog in [7, 1500, sstp_api::gateway_config::MAX_LISTEN_BACKLOG] {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)), backlog, "test").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(
            accept_queue_limit(port),
            backlog.min(somaxconn()),
            "backlog {backlog}"
        );
    }
}

#[tokio::test]
async fn a_taken_address_is_named_in_the_error() {
    let first = bind(SocketAddr::from(([127, 0, 0, 1], 0)), 16, "SSTP").unwrap();
    let taken = first.local_addr().unwrap();
    let err = bind(taken, 16, "SSTP").unwrap_err();
    assert_eq!(err.to_string(), format!("cannot listen on {taken} (SSTP)"));
}
