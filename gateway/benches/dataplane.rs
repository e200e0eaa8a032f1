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

// The test suite's packet builders (valid checksums: coalescing checks them).
#[allow(dead_code)]
#[path = "../src/test_packets.rs"]
mod test_packets;
use test_packets::tcp_segment;

const MTU: usize = 1400;
const HEADERS: usize = 40;
const MSS: usize = MTU - HEADERS;
const SEGMENTS: usize = 45;
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

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
        let _route = router.register(CLIENT, tx).expect("a route");
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
