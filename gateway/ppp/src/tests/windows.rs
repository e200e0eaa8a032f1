//! The client playing the Windows built-in client (`LinkProfile::Windows`) against the server:
//! what Windows sends (windows-client.md §1.5, §1.8) and what the server answers.

use super::*;
use crate::{FrameCompression, LinkProfile};

fn windows_pair(multilink: bool, ipv6_server: bool) -> Pair {
    let pool = Pool::new(&POOL);
    let mut server = server_config();
    server.ipv6 = ipv6_server;
    let mut client = client_config("alice", "correct horse");
    client.link = LinkProfile::Windows { multilink };
    client.ipv6 = true;
    let mut pair = Pair::new(
        new_server(server, alice(), &pool),
        Client::new(client, rng(2)),
    );
    pair.start();
    pair.run();
    pair
}

/// The packets one side sent of `protocol` and `code`, in order.
fn sent(pair: &Pair, by_server: bool, protocol: Protocol, code: u8) -> Vec<Sent> {
    pair.wire
        .iter()
        .filter(|(s, p)| *s == by_server && p.protocol == protocol && p.code == code)
        .map(|(_, p)| p.clone())
        .collect()
}

/// The option kinds of a Configure-Request, in order.
fn kinds(data: &[u8]) -> Vec<u8> {
    let mut kinds = Vec::new();
    let mut rest = data;
    while let [kind, len, ..] = *rest {
        kinds.push(kind);
        rest = &rest[usize::from(len)..];
    }
    kinds
}

#[test]
fn windows_lcp_request_without_multilink_gets_callback_rejected_then_opens() {
    let pair = windows_pair(false, false);
    let requests = sent(&pair, false, Protocol::LCP, 1);
    // SoftEther #1169 (Windows 10): MRU, Magic, PFC, ACFC, Callback.
    assert_eq!(kinds(&requests[0].data), [1, 5, 7, 8, 13]);
    assert_eq!(
        &requests[0].data[..4],
        &[0x01, 0x04, 0x0F, 0xFB],
        "MRU 4091"
    );
    assert_eq!(
        &requests[0].data[10..],
        &[0x07, 0x02, 0x08, 0x02, 0x0D, 0x03, 0x06]
    );
    let rejects = sent(&pair, true, Protocol::LCP, 4);
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].id, requests[0].id);
    assert_eq!(
        rejects[0].data,
        [0x0D, 0x03, 0x06],
        "only Callback is rejected"
    );
    assert_eq!(
        kinds(&requests[1].data),
        [1, 5, 7, 8],
        "re-sent without Callback"
    );
    let acks = sent(&pair, true, Protocol::LCP, 2);
    assert_eq!(acks[0].id, requests[1].id);
    assert_eq!(acks[0].data, requests[1].data);
    assert_eq!(
        pair.client.frame_compression(),
        FrameCompression {
            protocol_field: true,
            address_control: true
        },
        "the server acknowledged PFC and ACFC"
    );
    assert!(
        pair.client_events
            .iter()
            .any(|e| matches!(e, ClientEvent::Ipv4Up { .. }))
    );
}

#[test]
fn windows_lcp_request_with_multilink_gets_callback_mrru_and_endpoint_rejected() {
    let pair = windows_pair(true, false);
    let requests = sent(&pair, false, Protocol::LCP, 1);
    // sorz/sstp-server #5: mru 4091, magic, pcomp, accomp, callback CBCP, mrru 1614, endpoint.
    assert_eq!(kinds(&requests[0].data), [1, 5, 7, 8, 13, 17, 19]);
    let tail = &requests[0].data[17..];
    assert_eq!(&tail[..4], &[0x11, 0x04, 0x06, 0x4E], "MRRU 1614");
    assert_eq!(
        &tail[4..7],
        &[0x13, 23, 0x01],
        "Endpoint-Discriminator, class 1"
    );
    let rejects = sent(&pair, true, Protocol::LCP, 4);
    assert_eq!(rejects.len(), 1);
    assert_eq!(kinds(&rejects[0].data), [13, 17, 19]);
    assert_eq!(kinds(&requests[1].data), [1, 5, 7, 8]);
    assert_eq!(requests.len(), 2, "no third request: the second was acked");
    assert!(
        pair.client_events
            .iter()
            .any(|e| matches!(e, ClientEvent::Ipv4Up { .. }))
    );
}

#[test]
fn windows_ccp_request_is_protocol_rejected_once_and_never_retransmitted() {
    let pair = windows_pair(false, false);
    let ccp = sent(&pair, false, Protocol::CCP, 1);
    assert_eq!(
        ccp.len(),
        1,
        "the Protocol-Reject stopped the retransmissions"
    );
    // OGI's test vector: 01 07 00 0a 12 06 01 00 00 40.
    assert_eq!(ccp[0].data, [0x12, 0x06, 0x01, 0x00, 0x00, 0x40]);
    let rejects = sent(&pair, true, Protocol::LCP, 8);
    let ccp_reject = rejects
        .iter()
        .find(|r| r.data[..2] == [0x80, 0xFD])
        .expect("CCP Protocol-Rejected");
    assert_eq!(
        &ccp_reject.data[2..],
        &[
            0x01, ccp[0].id, 0x00, 0x0A, 0x12, 0x06, 0x01, 0x00, 0x00, 0x40
        ],
        "the rejected packet is returned whole"
    );
}

#[test]
fn windows_ipv6cp_is_protocol_rejected_by_an_ipv4_only_server_and_ipv4_stays_up() {
    let pair = windows_pair(false, false);
    let ipv6cp = sent(&pair, false, Protocol::IPV6CP, 1);
    assert_eq!(ipv6cp.len(), 1);
    let rejects = sent(&pair, true, Protocol::LCP, 8);
    assert!(rejects.iter().any(|r| r.data[..2] == [0x80, 0x57]));
    assert!(
        !pair
            .client_events
            .iter()
            .any(|e| matches!(e, ClientEvent::Down { .. }))
    );
}

#[test]
fn windows_ipv6cp_gets_a_proper_ipv6cp_answer_when_the_server_does_ipv6() {
    let pair = windows_pair(false, true);
    assert!(
        sent(&pair, true, Protocol::LCP, 8)
            .iter()
            .all(|r| r.data[..2] != [0x80, 0x57])
    );
    assert_eq!(
        sent(&pair, true, Protocol::IPV6CP, 2).len(),
        1,
        "Configure-Ack"
    );
    assert!(
        pair.client_events
            .iter()
            .any(|e| matches!(e, ClientEvent::Ipv6Up { .. }))
    );
}

#[test]
fn minimal_client_asks_for_no_compression_and_sends_no_ccp() {
    let pool = Pool::new(&POOL);
    let client = Client::new(client_config("alice", "correct horse"), rng(2));
    let mut pair = Pair::new(new_server(server_config(), alice(), &pool), client);
    pair.start();
    pair.run();
    assert_eq!(kinds(&sent(&pair, false, Protocol::LCP, 1)[0].data), [5]);
    assert!(sent(&pair, false, Protocol::CCP, 1).is_empty());
    assert_eq!(pair.client.frame_compression(), FrameCompression::default());
}
