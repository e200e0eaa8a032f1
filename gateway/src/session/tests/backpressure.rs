//! Backpressure from the TUN writer's queue to the clients (`session/tun_wait.rs`): a client that
//! sends faster than the queue empties is held back and loses nothing, and sessions held back
//! together take turns.

use std::net::Ipv4Addr;

use bytes::Bytes;
use sstp_proto::CloseReason;

use super::{Client, Duration, Gateway, packet};

/// A 1400-byte IPv4 packet from `source` to `destination` whose payload starts with `n`.
fn numbered(source: Ipv4Addr, destination: Ipv4Addr, n: u32) -> Bytes {
    const LEN: usize = 1400;
    let mut bytes = vec![0u8; LEN];
    bytes[..20].copy_from_slice(&packet(source, destination)[..20]);
    bytes[2..4].copy_from_slice(&(LEN as u16).to_be_bytes());
    bytes[10..12].fill(0);
    let sum = sstp_ppp::ipv4::checksum(&bytes[..20]);
    bytes[10..12].copy_from_slice(&sum.to_be_bytes());
    bytes[28..32].copy_from_slice(&n.to_be_bytes());
    Bytes::from(bytes)
}

#[tokio::test(start_paused = true)]
async fn a_client_sending_faster_than_the_tun_writer_takes_is_held_back_and_loses_nothing() {
    let mut gateway = Gateway::new(
        "a_client_sending_faster_than_the_tun_writer_takes_is_held_back_and_loses_nothing",
        10,
        None,
    );
    let (client, task, address) = gateway.up().await;
    let elsewhere = Ipv4Addr::new(198, 51, 100, 7);
    // 2.8 MB: far more than the TUN queue (64 packets here), the session's read buffer, the
    // pipe and the client's own queue hold together.
    const PACKETS: u32 = 2000;
    let sent = std::sync::atomic::AtomicU32::new(0);
    let send_all = async {
        for n in 0..PACKETS {
            client
                .send_ip(numbered(address, elsewhere, n))
                .await
                .unwrap();
            sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    };
    let drain = async {
        // Nobody takes from the TUN queue for a (virtual) second: the session fills it, then
        // stops reading, and the client's sends stop short.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let held_back = sent.load(std::sync::atomic::Ordering::Relaxed);
        assert!(held_back < PACKETS, "the client was never held back");
        assert_eq!(gateway.tun.len(), 64, "the TUN queue is full");
        let mut received = Vec::new();
        while received.len() < PACKETS as usize {
            received.push(gateway.tun.recv().await.unwrap());
        }
        received
    };
    let ((), received) = tokio::join!(send_all, drain);
    for (n, packet) in (0..PACKETS).zip(&received) {
        assert_eq!(
            packet.ip(),
            numbered(address, elsewhere, n),
            "packet {n} in order"
        );
    }
    assert_eq!(
        gateway.metric("sstp_client_packets_dropped_total{reason=\"foreign_source\"}"),
        0
    );
    assert_eq!(
        gateway.metric(r#"sstp_packets_total{direction="from_client"}"#),
        u64::from(PACKETS)
    );
    let waited: f64 = gateway
        .sample("sstp_tun_write_wait_seconds_total")
        .parse()
        .unwrap();
    assert!(waited >= 1.0, "the session waited the second: {waited}");
    assert_eq!(client.disconnect().await, CloseReason::LocalDisconnect);
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn sessions_held_back_by_a_full_tun_queue_take_turns_as_room_frees() {
    let mut gateway = Gateway::new(
        "sessions_held_back_by_a_full_tun_queue_take_turns_as_room_frees",
        10,
        None,
    );
    let (first, first_task, first_address) = gateway.up().await;
    let (second, second_task, second_address) = gateway.up().await;
    let elsewhere = Ipv4Addr::new(198, 51, 100, 7);
    const EACH: u32 = 1000;
    async fn send(client: &Client, address: Ipv4Addr, to: Ipv4Addr) {
        for n in 0..EACH {
            client.send_ip(numbered(address, to, n)).await.unwrap();
        }
    }
    let drain = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut sources = Vec::new();
        while sources.len() < 2 * EACH as usize {
            let received = gateway.tun.recv().await.unwrap();
            let packet = received.ip();
            sources.push(Ipv4Addr::new(
                packet[12], packet[13], packet[14], packet[15],
            ));
        }
        sources
    };
    let ((), (), sources) = tokio::join!(
        send(&first, first_address, elsewhere),
        send(&second, second_address, elsewhere),
        drain
    );
    // Once both wait, room goes to them in turn: in every stretch of 200 packets after the
    // queue's first fill, each session has a share; neither waits for the other to finish.
    for stretch in sources[64..2 * EACH as usize - 200].chunks(200) {
        let firsts = stretch.iter().filter(|s| **s == first_address).count();
        assert!(
            (40..=160).contains(&firsts),
            "{firsts} of 200 from the first session"
        );
    }
    for (client, task) in [(first, first_task), (second, second_task)] {
        assert_eq!(client.disconnect().await, CloseReason::LocalDisconnect);
        task.await.unwrap();
    }
}
