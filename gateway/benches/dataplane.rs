//! The data plane's per-packet work in user space, both ways (`cargo bench -p sstp-gateway
//! --bench dataplane`):
//! - to the client: splitting one 64 KiB TCP super-segment from the offloading TUN device into
//!   45 packets of 1,400 bytes, and routing one packet (copy + lookup + queue);
//! - from the client: the one copy of a packet behind the virtio header's room
//!   ([`ClientPacket::new`]) next to the plain copy it replaced, and coalescing 45 consecutive TCP
//!   segments of one flow into one write.
//!
//! What these replace happens in the kernel (one read or write, and one pass through the stack,
//! per packet); the load benchmark (tests/bench/load) measures the whole path against that.

use std::{hint::black_box, net::Ipv4Addr};

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sstp_gateway::{
    dataplane::ClientPacket,
    router::Router,
    tun::{HEADROOM, WriteBuffer},
};
use tokio::sync::mpsc;
use tun_rs::{GROTable, VIRTIO_NET_HDR_GSO_TCPV4, VirtioNetHdr};

const MTU: usize = 1400;
const HEADERS: usize = 40;
const MSS: usize = MTU - HEADERS;
const SEGMENTS: usize = 45;
const SERVER: [u8; 4] = [198, 51, 100, 7];
const CLIENT: [u8; 4] = [10, 77, 0, 2];

/// An IPv4/TCP packet (ACK, no options) with `payload` bytes at sequence `seq`.
fn tcp_segment(src: [u8; 4], dst: [u8; 4], seq: u32, payload: usize) -> Vec<u8> {
    let total = u16::try_from(HEADERS + payload).expect("fits");
    let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let checksum = internet_checksum(&p);
    p[10..12].copy_from_slice(&checksum.to_be_bytes());
    p.extend_from_slice(&443u16.to_be_bytes());
    p.extend_from_slice(&50_000u16.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&1u32.to_be_bytes()); // ack
    p.extend_from_slice(&[0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]); // offset 5, ACK, window
    p.resize(HEADERS + payload, 0xab);
    // The TCP checksum, over the pseudo header: coalescing checks it, as the kernel would.
    let mut pseudo = Vec::with_capacity(12 + p.len() - 20);
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&u16::try_from(p.len() - 20).expect("fits").to_be_bytes());
    pseudo.extend_from_slice(&p[20..]);
    let checksum = internet_checksum(&pseudo);
    p[36..38].copy_from_slice(&checksum.to_be_bytes());
    p
}

fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u64 = bytes
        .chunks(2)
        .map(|w| u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn to_client(c: &mut Criterion) {
    let mut group = c.benchmark_group("to_client");
    let super_segment = tcp_segment(SERVER, CLIENT, 1, SEGMENTS * MSS);
    let header = VirtioNetHdr {
        flags: 1, // needs checksum
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        hdr_len: HEADERS as u16,
        gso_size: MSS as u16,
        csum_start: 20,
        csum_offset: 16,
    };
    group.throughput(Throughput::Bytes(super_segment.len() as u64));
    group.bench_function("split_64k_super_segment_into_45", |b| {
        let mut input = super_segment.clone();
        let mut buffers = vec![vec![0u8; 1500]; tun_rs::IDEAL_BATCH_SIZE];
        let mut sizes = vec![0usize; tun_rs::IDEAL_BATCH_SIZE];
        b.iter(|| {
            // The split rewrites the headers in place; start from the same input each time.
            input.copy_from_slice(&super_segment);
            let count = tun_rs::gso_split(
                black_box(&mut input),
                header,
                &mut buffers,
                &mut sizes,
                0,
                false,
            )
            .expect("splits");
            assert_eq!(count, SEGMENTS);
            black_box(sizes[count - 1])
        });
    });

    let packet = tcp_segment(SERVER, CLIENT, 1, MSS);
    group.throughput(Throughput::Bytes(packet.len() as u64));
    group.bench_function("route_one_1400_byte_packet", |b| {
        let router = Router::new();
        let (tx, mut rx) = mpsc::channel(256);
        let _route = router
            .register(Ipv4Addr::from(CLIENT), tx)
            .expect("a route");
        b.iter(|| {
            let outcome = router.route(Bytes::copy_from_slice(black_box(&packet)));
            black_box(rx.try_recv().expect("queued"));
            outcome
        });
    });
    group.finish();
}

fn from_client(c: &mut Criterion) {
    let mut group = c.benchmark_group("from_client");
    let packet = tcp_segment(CLIENT, SERVER, 1, MSS);
    group.throughput(Throughput::Bytes(packet.len() as u64));
    group.bench_function("client_packet_copy_1400", |b| {
        b.iter(|| black_box(ClientPacket::new(black_box(&packet))));
    });
    group.bench_function("plain_copy_1400_before", |b| {
        b.iter(|| black_box(Bytes::copy_from_slice(black_box(&packet))));
    });

    let segments: Vec<Vec<u8>> = (0..SEGMENTS)
        .map(|n| {
            let seq = 1 + u32::try_from(n * MSS).expect("fits");
            [vec![0; HEADROOM], tcp_segment(CLIENT, SERVER, seq, MSS)].concat()
        })
        .collect();
    group.throughput(Throughput::Bytes((SEGMENTS * MTU) as u64));
    group.bench_function("coalesce_45_segments_of_one_flow", |b| {
        let mut gro = GROTable::default();
        b.iter(|| {
            // What the writer has: packets sized to themselves, as they came from the sessions.
            let mut batch: Vec<WriteBuffer> = segments
                .iter()
                .map(|s| WriteBuffer::from(BytesMut::from(&s[..])))
                .collect();
            gro.apply_gro(black_box(&mut batch), HEADROOM, false)
                .expect("coalesces");
            let head = batch[0].bytes().len();
            assert_eq!(head, HEADROOM + HEADERS + SEGMENTS * MSS, "one write");
            black_box(head)
        });
    });
    group.finish();
}

criterion_group!(benches, to_client, from_client);
criterion_main!(benches);
