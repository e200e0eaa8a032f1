use std::time::Duration;

use tokio::{net::UdpSocket, time::timeout};

use super::*;
use sstp_e2e::thread_netns::{in_new_netns, run};

fn settings() -> TunSettings {
    TunSettings {
        name: "sstptest0".into(),
        address: Ipv4Addr::new(10, 99, 0, 1),
        pool: "10.99.0.0/24".parse().unwrap(),
        mtu: 1380,
    }
}

/// An IPv4/UDP packet with a correct header checksum and no UDP checksum (allowed in IPv4).
fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let sum = p
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let folded = (sum & 0xffff) + (sum >> 16);
    let checksum = !((folded & 0xffff) + (folded >> 16)) as u16;
    p[10..12].copy_from_slice(&checksum.to_be_bytes());
    p.extend_from_slice(&4000u16.to_be_bytes());
    p.extend_from_slice(&dst_port.to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

#[test]
fn the_device_comes_up_with_the_gateway_address_and_mtu() {
    in_new_netns(
        "tun::the_device_comes_up_with_the_gateway_address_and_mtu",
        || {
            runtime().block_on(async {
                let _tun = TunDevice::create(&settings()).unwrap();
                let link = run(&["ip", "-o", "link", "show", "dev", "sstptest0"]);
                assert!(link.contains("mtu 1380"), "{link}");
                assert!(link.contains(",UP"), "{link}");
                assert!(link.contains(&format!("qlen {TX_QUEUE_LEN}")), "{link}");
                let addr = run(&["ip", "-o", "-4", "addr", "show", "dev", "sstptest0"]);
                assert!(addr.contains("10.99.0.1/24"), "{addr}");
            });
        },
    );
}

#[test]
fn packets_flow_both_ways_between_the_device_and_the_kernel() {
    in_new_netns(
        "tun::packets_flow_both_ways_between_the_device_and_the_kernel",
        || {
            runtime().block_on(async {
                let tun = TunDevice::create(&settings()).unwrap();
                // Kernel -> TUN: a datagram to a pool address leaves through the device.
                let socket = UdpSocket::bind("10.99.0.1:0").await.unwrap();
                socket.send_to(b"to-client", "10.99.0.2:7").await.unwrap();
                let mut buf = vec![0u8; 2048];
                let packet = timeout(Duration::from_secs(10), async {
                    loop {
                        let n = tun.recv(&mut buf).await.unwrap();
                        // Skip anything else the kernel may emit on a fresh link.
                        if n >= 20 && buf[0] >> 4 == 4 && buf[16..20] == [10, 99, 0, 2] {
                            return buf[..n].to_vec();
                        }
                    }
                })
                .await
                .expect("the datagram reaches the TUN device");
                assert_eq!(&packet[packet.len() - 9..], b"to-client");

                // TUN -> kernel: a packet written to the device reaches a local socket.
                let local = socket.local_addr().unwrap();
                let reply = udp_packet(
                    Ipv4Addr::new(10, 99, 0, 2),
                    Ipv4Addr::new(10, 99, 0, 1),
                    local.port(),
                    b"from-client",
                );
                tun.send(&reply).await.unwrap();
                let mut got = [0u8; 64];
                let (n, from) = timeout(Duration::from_secs(10), socket.recv_from(&mut got))
                    .await
                    .expect("the written packet is delivered")
                    .unwrap();
                assert_eq!(&got[..n], b"from-client");
                assert_eq!(from.ip(), Ipv4Addr::new(10, 99, 0, 2));
            });
        },
    );
}

#[test]
fn a_taken_name_is_a_clear_error() {
    in_new_netns("tun::a_taken_name_is_a_clear_error", || {
        runtime().block_on(async {
            let _first = TunDevice::create(&settings()).unwrap();
            let err = TunDevice::create(&settings()).unwrap_err();
            assert!(err.to_string().contains("sstptest0"), "{err}");
        });
    });
}

/// A current-thread tokio runtime, built on the calling (namespaced) thread.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
