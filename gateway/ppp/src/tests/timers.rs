//! The link's timer table and phases: which timer is due next, by name, and what each phase
//! still holds.

use super::*;

fn next(server: &Server) -> Option<&'static str> {
    let next = server.next_timer();
    assert_eq!(
        next.map(|(_, at)| at),
        server.poll_timeout(),
        "poll_timeout is the table's minimum"
    );
    next.map(|(timer, _)| timer.name())
}

#[test]
fn the_next_timer_and_the_phase_follow_the_link_through_its_life() {
    let pool = Pool::new(&POOL);
    let server = new_server(server_config(), alice(), &pool);
    let client = Client::new(client_config("alice", "correct horse"), rng(2));
    let mut pair = Pair::new(server, client);
    assert_eq!(next(&pair.server), None, "a dead link has no timer");

    pair.server.lower_up(pair.now);
    assert_eq!(
        next(&pair.server),
        Some("lcp"),
        "LCP's Configure-Request retransmits"
    );

    pair.client.lower_up(pair.now);
    pair.drive();
    assert!(
        format!("{:?}", pair.server).contains("\"network\""),
        "{:?}",
        pair.server
    );
    assert_eq!(next(&pair.server), None, "every automaton is Opened");

    pair.server.close(pair.now, "test");
    let server = format!("{:?}", pair.server);
    // Terminate holds nothing above LCP: the NCPs went with the Network phase.
    assert!(server.contains("\"terminate\""), "{server}");
    assert_eq!(
        next(&pair.server),
        Some("lcp"),
        "the Terminate-Request retransmits"
    );

    pair.run();
    assert!(format!("{:?}", pair.server).contains("\"finished\""));
    assert_eq!(next(&pair.server), None, "a finished link has no timer");
    assert!(pool.in_use().is_empty(), "the address went back");
}
