use std::time::Duration;

use tokio::{net::UdpSocket, time::timeout};

use super::*;
use crate::test_packets::{tcp_segment, udp_packet};
use sstp_e2e::thread_netns::{in_new_netns, run};

fn settings(offload: bool, queues: usize) -> TunSettings {
    TunSettings {
        name: "sstptest0".into(),
        address: Ipv4Addr::new(10, 99, 0, 1),
        pool: "10.99.0.0/24".parse().unwrap(),
        mtu: 1380,
        offload,
        queues,
    }
}

#[test]
fn the_device_comes_up_with_the_gateway_address_mtu_and_queue_length() {
    in_new_netns(
        "tun::the_device_comes_up_with_the_gateway_address_mtu_and_queue_length",
        || {
            runtime().block_on(async {
                let tun = TunDevice::create(&settings(true, 1)).expect("the device");
                assert!(tun.offload(), "this kernel takes offload");
                let link = run(&["ip", "-o", "link", "show", "dev", "sstptest0"]);
                assert!(link.contains("mtu 1380"), "{link}");
                assert!(link.contains(",UP"), "{link}");
                assert!(link.contains(&format!("qlen {TX_QUEUE_LEN}")), "{link}");
                let addr = run(&["ip", "-o", "-4", "addr", "show", "dev", "sstptest0"]);
                assert!(addr.contains("10.99.0.1/24"), "{addr}");
                // What offload means to the kernel: it may hand over unsegmented TCP.
                let features = run(&["ethtool", "-k", "sstptest0"]);
                assert!(
                    features.contains("tcp-segmentation-offload: on"),
                    "{features}"
                );
            });
        },
    );
}

#[test]
fn without_offload_the_kernel_segments_tcp_itself() {
    in_new_netns(
        "tun::without_offload_the_kernel_segments_tcp_itself",
        || {
            runtime().block_on(async {
                let tun = TunDevice::create(&settings(false, 1)).expect("the device");
                assert!(!tun.offload());
                let features = run(&["ethtool", "-k", "sstptest0"]);
                assert!(
                    features.contains("tcp-segmentation-offload: off"),
                    "{features}"
                );
            });
        },
    );
}

#[test]
fn packets_flow_both_ways_with_and_without_offload_and_on_every_queue() {
    in_new_netns(
        "tun::packets_flow_both_ways_with_and_without_offload_and_on_every_queue",
        || {
            runtime().block_on(async {
                for (offload, queues) in [(false, 1), (true, 1), (false, 3), (true, 3)] {
                    let tun = TunDevice::create(&settings(offload, queues)).expect("the device");
                    assert_eq!(tun.queues().len(), queues);
                    assert_eq!(tun.offload(), offload);
                    for (index, queue) in tun.queues().iter().enumerate() {
                        exchange_one_datagram(queue, index).await;
                    }
                    drop(tun);
                    // The device goes with its last descriptor.
                    let links = run(&["ip", "-o", "link", "show"]);
                    assert!(!links.contains("sstptest0"), "{links}");
                }
            });
        },
    );
}

/// A packet written on `queue` reaches a local socket, and the kernel sends the reply (same
/// flow) back on the queue the flow was written on.
async fn exchange_one_datagram(queue: &TunQueue, index: usize) {
    let socket = UdpSocket::bind("10.99.0.1:0").await.expect("a socket");
    let local = socket.local_addr().expect("its address");
    let peer = Ipv4Addr::new(10, 99, 0, 2);
    let hello = udp_packet(
        peer,
        Ipv4Addr::new(10, 99, 0, 1),
        4000,
        local.port(),
        b"from-client",
    );
    let mut gro = GROTable::default();
    let mut batch = [WriteBuffer::from(BytesMut::from(
        &[vec![0; HEADROOM], hello].concat()[..],
    ))];
    queue.send(&mut gro, &mut batch).await.expect("written");
    let mut got = [0u8; 64];
    let (n, from) = timeout(Duration::from_secs(10), socket.recv_from(&mut got))
        .await
        .expect("the written packet is delivered")
        .expect("a datagram");
    assert_eq!(&got[..n], b"from-client", "queue {index}");
    socket.send_to(b"to-client", from).await.expect("sent");
    let mut segments = Segments::new(1380);
    let reply = timeout(Duration::from_secs(10), async {
        loop {
            queue.recv(&mut segments).await.expect("a read");
            // Skip anything else the kernel may emit on a fresh link.
            if let Some(packet) = segments
                .iter()
                .find(|p| p.len() >= 20 && p[0] >> 4 == 4 && p[16..20] == peer.octets())
            {
                return packet.to_vec();
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the reply comes back on queue {index}"));
    assert_eq!(&reply[reply.len() - 9..], b"to-client");
}

#[test]
fn a_kernel_that_refuses_offload_gets_a_device_without_it() {
    in_new_netns(
        "tun::a_kernel_that_refuses_offload_gets_a_device_without_it",
        || {
            refuse_tun_offload_on_this_thread();
            runtime().block_on(async {
                let tun = TunDevice::create(&settings(true, 2)).expect("a device all the same");
                assert!(!tun.offload(), "offload was refused");
                assert_eq!(tun.queues().len(), 2);
                for (index, queue) in tun.queues().iter().enumerate() {
                    exchange_one_datagram(queue, index).await;
                }
            });
        },
    );
}

#[test]
fn a_taken_name_is_a_clear_error() {
    in_new_netns("tun::a_taken_name_is_a_clear_error", || {
        runtime().block_on(async {
            let _first = TunDevice::create(&settings(true, 1)).expect("the device");
            let err = TunDevice::create(&settings(true, 1)).expect_err("the name is taken");
            assert!(err.to_string().contains("sstptest0"), "{err}");
        });
    });
}

/// Makes the kernel answer `TUNSETOFFLOAD` with EINVAL on this thread (and what it starts),
/// as a kernel without TUN offload does, by a seccomp filter: a real refusal, not a stand-in.
/// Clearing the offloads (argument 0) is still allowed, as it is on such kernels.
#[allow(unsafe_code)]
fn refuse_tun_offload_on_this_thread() {
    use nix::libc::{
        self, BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, SECCOMP_RET_ALLOW,
        SECCOMP_RET_ERRNO, sock_filter, sock_fprog,
    };
    // _IOW('T', 208, unsigned int).
    const TUNSETOFFLOAD: u32 = 0x4004_54d0;
    // Offsets in struct seccomp_data: nr, then arch and ip, then args[6] of 8 bytes each; the
    // low half of an argument comes first on the little-endian machines this runs on.
    const NR: u32 = 0;
    const ARG1: u32 = 16 + 8;
    const ARG2: u32 = 16 + 16;
    let load = |k| sock_filter {
        code: (BPF_LD | BPF_W | BPF_ABS) as u16,
        jt: 0,
        jf: 0,
        k,
    };
    // Compare with `k`: skip `jt` instructions when equal, `jf` when not.
    let jump_if = |k, jt, jf| sock_filter {
        code: (BPF_JMP | BPF_JEQ | BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let ret = |k| sock_filter {
        code: (BPF_RET | BPF_K) as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let program = [
        load(NR),
        jump_if(libc::SYS_ioctl as u32, 0, 5),
        load(ARG1),
        jump_if(TUNSETOFFLOAD, 0, 3),
        load(ARG2),
        jump_if(0, 1, 0),
        ret(SECCOMP_RET_ERRNO | libc::EINVAL as u32),
        ret(SECCOMP_RET_ALLOW),
    ];
    let fprog = sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: plain prctl calls; the filter program outlives the call (the kernel copies it).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &raw const fprog,
                0,
                0
            ),
            0,
            "seccomp filter: {}",
            io::Error::last_os_error()
        );
    }
}

/// A current-thread tokio runtime, built on the calling (namespaced) thread.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// What the writer hands over is packets sized to themselves; coalescing must still merge a
/// flow's consecutive segments into one write (tun-rs coalesces only into room a buffer says it
/// has, which a buffer sized to its packet would not have).
#[test]
fn consecutive_segments_of_one_flow_coalesce_into_one_write() {
    let client = Ipv4Addr::new(10, 99, 0, 2);
    let server = Ipv4Addr::new(198, 51, 100, 7);
    let (segments, mss) = (8usize, 1360usize);
    let mut batch: Vec<WriteBuffer> = (0..segments)
        .map(|n| {
            let seq = 1 + u32::try_from(n * mss).expect("fits");
            let packet = tcp_segment(client, server, seq, mss);
            WriteBuffer::from(BytesMut::from(&[vec![0; HEADROOM], packet].concat()[..]))
        })
        .collect();
    GROTable::default()
        .apply_gro(&mut batch, HEADROOM, false)
        .expect("coalesces");
    assert_eq!(batch[0].bytes().len(), HEADROOM + 40 + segments * mss);
}
