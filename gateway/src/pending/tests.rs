use std::{net::IpAddr, time::Duration};

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn table(limit: u32, per_source: u32) -> Arc<PendingConnections> {
    PendingConnections::new(limit, per_source, Metrics::new())
}

async fn was_evicted(ticket: &PendingTicket) -> bool {
    tokio::time::timeout(Duration::from_millis(20), ticket.evicted())
        .await
        .is_ok()
}

#[tokio::test]
async fn a_full_table_evicts_the_oldest_of_the_biggest_source_not_the_newcomer() {
    let pending = table(4, 8);
    let flood: Vec<_> = (0..3)
        .map(|_| pending.enter(ip("198.51.100.1")).unwrap())
        .collect();
    let user = pending.enter(ip("203.0.113.7")).unwrap();
    assert_eq!(pending.len(), 4);

    // The flooder's fourth connection pushes out the flooder's own oldest.
    let fourth = pending.enter(ip("198.51.100.1")).unwrap();
    assert!(was_evicted(&flood[0]).await);
    assert!(!was_evicted(&flood[1]).await);
    assert!(!was_evicted(&user).await);
    assert_eq!(pending.len(), 4);

    // A second user: the biggest source (the flooder) gives up its oldest remaining one.
    let second_user = pending.enter(ip("203.0.113.8")).unwrap();
    assert!(was_evicted(&flood[1]).await);
    assert!(!was_evicted(&user).await);
    assert!(!was_evicted(&fourth).await);
    assert!(user.promote(), "a user that was not evicted is admitted");
    drop(second_user);
    assert_eq!(pending.len(), 2, "flood[2] and fourth");
}

#[tokio::test]
async fn with_one_connection_per_source_the_oldest_of_all_goes() {
    let pending = table(3, 8);
    let a = pending.enter(ip("192.0.2.1")).unwrap();
    let b = pending.enter(ip("192.0.2.2")).unwrap();
    let c = pending.enter(ip("192.0.2.3")).unwrap();
    let _d = pending.enter(ip("192.0.2.4")).unwrap();
    assert!(was_evicted(&a).await);
    assert!(!was_evicted(&b).await && !was_evicted(&c).await);
    assert!(!a.promote(), "an evicted connection cannot be admitted");
    assert_eq!(pending.len(), 3);
}

#[test]
fn a_source_over_its_share_is_refused_and_counted_and_places_come_back() {
    let metrics = Metrics::new();
    let pending = PendingConnections::new(100, 2, metrics.clone());
    let first = pending.enter(ip("192.0.2.1")).unwrap();
    let _second = pending.enter(ip("192.0.2.1")).unwrap();
    assert_eq!(
        pending.enter(ip("192.0.2.1")).unwrap_err(),
        PerSourceFull(2)
    );
    assert!(pending.enter(ip("192.0.2.2")).is_ok());
    let text = metrics.render();
    assert!(text.contains("sstp_connections_rejected_total{reason=\"per_source_limit\"} 1"));
    assert!(text.contains("sstp_connections_pending 2"), "{text}");
    drop(first);
    assert!(pending.enter(ip("192.0.2.1")).is_ok());
}

#[test]
fn ipv6_sources_share_their_slash_64_and_mapped_ipv4_is_ipv4() {
    assert_eq!(
        SourceKey::of(ip("2001:db8:1:2:aaaa::1")),
        SourceKey::of(ip("2001:db8:1:2:bbbb::2"))
    );
    assert_ne!(
        SourceKey::of(ip("2001:db8:1:2::1")),
        SourceKey::of(ip("2001:db8:1:3::1"))
    );
    assert_eq!(
        SourceKey::of(ip("::ffff:192.0.2.1")),
        SourceKey::of(ip("192.0.2.1"))
    );
    let pending = table(10, 1);
    let _a = pending.enter(ip("2001:db8::1")).unwrap();
    assert!(pending.enter(ip("2001:db8::2")).is_err());
}

#[test]
fn a_promoted_ticket_frees_its_place_once() {
    let pending = table(2, 2);
    let ticket = pending.enter(ip("192.0.2.1")).unwrap();
    assert!(ticket.promote());
    assert!(pending.is_empty());
}
