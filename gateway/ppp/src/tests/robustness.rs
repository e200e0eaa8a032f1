//! Malformed, truncated and random input: never a panic, and nothing leaks.

use rand_core::Rng;

use super::*;

/// Every frame of a full session with IPv6, recorded from both sides.
fn recorded_frames() -> Vec<(bool, Vec<u8>)> {
    let pool = Pool::new(&POOL);
    let mut server = server_config();
    server.ipv6 = true;
    let mut client = client_config("alice", "correct horse");
    client.ipv6 = true;
    let mut pair = Pair::new(
        new_server(server, alice(), &pool),
        Client::new(client, rng(2)),
    );
    pair.start();
    pair.run();
    pair.server.close(pair.now, "end");
    pair.run();
    pair.wire
        .iter()
        .map(|(from_server, s)| {
            let mut frame = Vec::new();
            crate::encode_frame(s.protocol, &packet(s.code, s.id, &s.data), &mut frame);
            (*from_server, frame)
        })
        .collect()
}

/// A pair that has reached the Network phase, so every layer is live.
fn live_pair(pool: &Pool) -> Pair {
    let mut server = server_config();
    server.ipv6 = true;
    let mut client = client_config("alice", "correct horse");
    client.ipv6 = true;
    let mut pair = Pair::new(
        new_server(server, alice(), pool),
        Client::new(client, rng(2)),
    );
    pair.start();
    pair.drive();
    pair
}

fn feed(pair: &mut Pair, to_server: bool, frame: &[u8]) {
    let Ok(decoded) = decode_frame(frame) else {
        return;
    };
    if to_server {
        pair.server
            .handle_frame(pair.now, decoded.protocol, decoded.information);
    } else {
        pair.client
            .handle_frame(pair.now, decoded.protocol, decoded.information);
    }
}

#[test]
fn every_truncation_of_every_session_frame_is_handled_without_panic() {
    let frames = recorded_frames();
    assert!(frames.len() > 15, "the session exercised every protocol");
    let pool = Pool::new(&POOL);
    let mut pair = live_pair(&pool);
    for (from_server, frame) in &frames {
        for len in 0..frame.len() {
            feed(&mut pair, !from_server, &frame[..len]);
            pair.drive();
        }
    }
    pair.run();
    drop(pair);
    assert!(
        pool.in_use().is_empty(),
        "the address came back whatever happened"
    );
}

#[test]
fn random_bytes_and_bit_flips_never_panic_in_any_phase() {
    let frames = recorded_frames();
    let mut random = rng(99);
    let pool = Pool::new(&POOL);
    for round in 0..40 {
        let mut pair = live_pair(&pool);
        if round % 2 == 0 {
            // Also hit the establish phase of fresh peers.
            pair = Pair::new(
                new_server(server_config(), alice(), &pool),
                Client::new(client_config("alice", "correct horse"), rng(round)),
            );
            pair.start();
        }
        for (from_server, frame) in &frames {
            let mut mutated = frame.clone();
            let flips = 1 + random.next_u32() as usize % 4;
            for _ in 0..flips {
                let index = random.next_u32() as usize % mutated.len();
                mutated[index] ^= 1 << (random.next_u32() % 8);
            }
            feed(&mut pair, !from_server, &mutated);
            let mut noise = vec![0u8; random.next_u32() as usize % 64];
            random.fill_bytes(&mut noise);
            let protocol = [
                Protocol::LCP,
                Protocol::CHAP,
                Protocol::IPCP,
                Protocol::IPV6CP,
            ][random.next_u32() as usize % 4];
            pair.server.handle_frame(pair.now, protocol, &noise);
            pair.client.handle_frame(pair.now, protocol, &noise);
            pair.drive();
        }
        pair.run();
        pair.server.lower_down();
        assert!(pool.in_use().is_empty());
    }
}

#[test]
fn frames_after_down_or_before_lower_up_are_ignored() {
    let pool = Pool::new(&POOL);
    let mut server = new_server(server_config(), alice(), &pool);
    let now = Instant::now();
    server.handle_frame(now, Protocol::LCP, &packet(1, 1, &[]));
    assert!(server.poll_transmit().is_none());
    server.lower_up(now);
    server.lower_down();
    server.handle_frame(now, Protocol::LCP, &packet(1, 1, &[]));
    assert!(server.poll_transmit().is_none());
    assert!(server.poll_timeout().is_none());
}

#[test]
fn the_fuzzing_login_helper_really_reaches_the_network_phase() {
    let (server, sent) = crate::fuzzing::logged_in_server(Instant::now());
    assert!(server.peer_ipv4().is_some());
    assert!(
        sent.iter()
            .any(|f| decode_frame(f).unwrap().protocol == Protocol::IPV6CP)
    );
}
