//! The connection's timer table: which entry is due next, by name, through a call's life.

use super::pair::Pair;

/// The name of the timer `poll_timeout` is waiting for on the server side.
fn next_server_timer(pair: &Pair) -> Option<&'static str> {
    let server = &pair.server;
    let ppp = crate::connection::Side::ppp_timeout(&server.side);
    let next = server.common.next_timer(ppp)?;
    assert_eq!(
        Some(next.1),
        server.poll_timeout(),
        "poll_timeout is the table's minimum"
    );
    Some(next.0.name())
}

#[test]
fn the_next_timer_is_named_for_the_phase_the_call_is_in() {
    let mut pair = Pair::new();
    assert_eq!(
        next_server_timer(&pair),
        Some("negotiation"),
        "before the HTTP request"
    );
    pair.connect();
    assert_eq!(next_server_timer(&pair), Some("hello"), "once connected");

    // The client goes silent, so every timer of the teardown runs out in turn.
    pair.client_muted = true;
    let now = pair.now;
    pair.server.disconnect(now);
    assert_eq!(
        next_server_timer(&pair),
        Some("ppp"),
        "LCP's Terminate-Request retransmits"
    );
    pair.run_until("LCP to give up", |p| next_server_timer(p) != Some("ppp"));
    assert_eq!(
        next_server_timer(&pair),
        Some("disconnect-1"),
        "CALL_DISCONNECT waits for its ACK"
    );
    pair.run_until_closed();
    assert_eq!(
        next_server_timer(&pair),
        None,
        "a closed connection has no timer"
    );
}
