//! Split-tunnel routes for Windows clients: the project's client sends a DHCPINFORM through
//! the tunnel, as Windows RAS does after IPCP, and reads the gateway's DHCPACK.
//! Run as root: `cargo test -p sstp-gateway --test dhcp_inform`.
#![allow(clippy::unwrap_used)]

mod common;

use std::{net::Ipv4Addr, time::Duration};

use bytes::Bytes;
use common::{USERS, in_new_netns, ping, runtime, start};
use sstp_gateway::client::Client;
use sstp_ppp::dhcp_inform::{Ack, ClasslessRoute, parse_ack};

/// A DHCPINFORM from `client` to `destination` (UDP 68 -> 67, no UDP checksum, as RFC 768
/// allows), with the options Windows sends: 53 = 8, 61, 12, 60 "MSFT 5.0", 55 asking for 249
/// and 121.
fn inform(client: Ipv4Addr, destination: Ipv4Addr, xid: u32) -> Bytes {
    let mac = [0x02, 0x00, 0x4C, 0x4F, 0x4F, 0x50];
    let mut dhcp = vec![1, 1, 6, 0];
    dhcp.extend_from_slice(&xid.to_be_bytes());
    dhcp.extend_from_slice(&[0; 4]);
    dhcp.extend_from_slice(&client.octets());
    dhcp.resize(28, 0);
    dhcp.extend_from_slice(&mac);
    dhcp.resize(236, 0);
    dhcp.extend_from_slice(&[99, 130, 83, 99, 53, 1, 8, 61, 7, 1]);
    dhcp.extend_from_slice(&mac);
    dhcp.extend_from_slice(&[12, 8]);
    dhcp.extend_from_slice(b"WIN11-VM");
    dhcp.extend_from_slice(&[60, 8]);
    dhcp.extend_from_slice(b"MSFT 5.0");
    dhcp.extend_from_slice(&[55, 6, 1, 3, 6, 15, 121, 249, 255]);
    let udp_len = u16::try_from(8 + dhcp.len()).unwrap();
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&(20 + udp_len).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0, 0, 128, 17, 0, 0]);
    ip.extend_from_slice(&client.octets());
    ip.extend_from_slice(&destination.octets());
    let sum = sstp_ppp::ipv4::checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&[0, 68, 0, 67]);
    ip.extend_from_slice(&udp_len.to_be_bytes());
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(&dhcp);
    Bytes::from(ip)
}

/// The first packet from the gateway within 3 s that `pick` accepts.
async fn receive<T>(client: &mut Client, pick: impl Fn(&[u8]) -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Some(packet)) = tokio::time::timeout_at(deadline, client.recv_ip()).await {
        if let Some(found) = pick(&packet) {
            return Some(found);
        }
    }
    None
}

fn ack_for(xid: u32) -> impl Fn(&[u8]) -> Option<Ack> {
    move |packet| parse_ack(packet).ok().filter(|ack| ack.xid == xid)
}

#[test]
fn a_dhcpinform_through_the_tunnel_gets_the_configured_routes_back() {
    in_new_netns("dhcp_inform_routes", || {
        runtime().block_on(async {
            let h = start("dhcproutes", |config| {
                config.routes = ["10.17.0.0/16", "192.168.1.0/24", "198.51.100.7/32"]
                    .iter()
                    .map(|r| r.parse().unwrap())
                    .collect();
                config.dns = vec![Ipv4Addr::new(10, 77, 0, 53)];
            })
            .await;
            let (mut client, addr) = h.connect(USERS[0].0, USERS[0].1).await;
            let gateway = h.gateway_ip();
            let expected: Vec<ClasslessRoute> = [([10, 17, 0, 0], 16), ([192, 168, 1, 0], 24)]
                .into_iter()
                .chain([([198, 51, 100, 7], 32)])
                .map(|(a, len)| ClasslessRoute::new(Ipv4Addr::from(a), len, gateway).unwrap())
                .collect();
            // Windows broadcasts; a unicast to the gateway's tunnel address is answered too.
            for (xid, destination) in [(0x5E1F_0A33, Ipv4Addr::BROADCAST), (7, gateway)] {
                client
                    .send_ip(inform(addr, destination, xid))
                    .await
                    .unwrap();
                let ack = receive(&mut client, ack_for(xid))
                    .await
                    .expect("a DHCPACK within 3 s");
                assert_eq!(ack.destination, addr);
                assert_eq!(ack.ciaddr, addr);
                assert_eq!(ack.yiaddr, Ipv4Addr::UNSPECIFIED);
                assert_eq!(ack.server_id, Some(gateway));
                assert_eq!(ack.dns, vec![Ipv4Addr::new(10, 77, 0, 53)]);
                assert_eq!(ack.domain, None);
                assert_eq!(ack.ms_classless_routes, expected, "option 249");
                assert_eq!(ack.classless_routes, expected, "option 121");
            }
            ping(&mut client, addr, gateway, 1, b"still a tunnel").await;
            client.disconnect().await;
        });
    });
}

#[test]
fn without_routes_a_dhcpinform_is_forwarded_like_any_packet() {
    in_new_netns("dhcp_inform_none", || {
        runtime().block_on(async {
            let h = start("dhcpnone", |_| {}).await;
            let (mut client, addr) = h.connect(USERS[0].0, USERS[0].1).await;
            let gateway = h.gateway_ip();
            client.send_ip(inform(addr, gateway, 9)).await.unwrap();
            // The namespace's kernel got it through the TUN device: nothing listens on port
            // 67 there, so it answers ICMP port unreachable (RFC 792 type 3 code 3), quoting
            // the request, and no DHCPACK comes.
            let answer = receive(&mut client, |p| {
                let dhcp = parse_ack(p).is_ok();
                let unreachable = p.len() >= 28 && p[9] == 1 && p[20] == 3 && p[21] == 3;
                (dhcp || unreachable).then_some(dhcp)
            })
            .await;
            assert_eq!(
                answer,
                Some(false),
                "ICMP port unreachable from the kernel, not a DHCPACK"
            );
            client.disconnect().await;
        });
    });
}
