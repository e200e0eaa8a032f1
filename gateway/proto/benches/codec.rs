//! Data-path codec cost: deframe + decode one 1400-byte data packet, and encode one.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sstp_proto::{Deframer, Packet, packet};

fn data_packet(len: usize) -> Vec<u8> {
    let mut frame = vec![0xff, 0x03, 0x00, 0x21];
    frame.resize(len - packet::HEADER_LEN, 0x45);
    let mut out = Vec::new();
    packet::encode_data(&frame, &mut out).expect("fits");
    out
}

fn codec(c: &mut Criterion) {
    let wire = data_packet(1400);
    let mut group = c.benchmark_group("data_packet_1400");
    group.throughput(Throughput::Bytes(1400));
    group.bench_function("deframe_and_decode", |b| {
        let mut deframer = Deframer::new();
        b.iter(|| {
            let mut payload = 0;
            deframer
                .feed(black_box(&wire), |frame| {
                    if let Ok(Packet::Data(ppp)) = Packet::decode(frame.bytes) {
                        payload += ppp.len();
                    }
                })
                .expect("valid");
            black_box(payload)
        });
    });
    let frame = wire[packet::HEADER_LEN..].to_vec();
    group.bench_function("encode", |b| {
        let mut out = Vec::with_capacity(2048);
        b.iter(|| {
            out.clear();
            packet::encode_data(black_box(&frame), &mut out).expect("fits");
            black_box(out.len())
        });
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
