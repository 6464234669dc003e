//! Decoding cost per MiB: inlet's bounded, sliced decoder
//! (`http::coding::decode`, as the server runs it) against each crate called
//! directly on the same bytes (flate2's `MultiGzDecoder` / `ZlibDecoder`
//! read to the end, `zstd::stream::decode_all`). The sample is ~4 MiB of
//! NDJSON CloudEvents, as a client batches them. Throughput is of decoded
//! bytes. Run: `cargo bench -p inlet-shared --bench coding`.

use std::io::Read;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use inlet_shared::http::coding::{decode, Coding};

fn sample() -> Vec<u8> {
    (0..15_000)
        .flat_map(|i| {
            format!(
                "{{\"specversion\":\"1.0\",\"id\":\"e-{i}\",\"source\":\"/bench\",\"type\":\"bench.event\",\
                 \"data\":{{\"seq\":{i},\"v\":\"abcdefgh\"}}}}\n"
            )
            .into_bytes()
        })
        .collect()
}

fn direct(coding: Coding, packed: &[u8]) -> usize {
    let mut out = Vec::new();
    match coding {
        Coding::Gzip => flate2::read::MultiGzDecoder::new(packed).read_to_end(&mut out).map(|_| ()),
        Coding::Deflate => flate2::read::ZlibDecoder::new(packed).read_to_end(&mut out).map(|_| ()),
        Coding::Zstd => zstd::stream::decode_all(packed).map(|d| out = d),
    }
    .map(|_| out.len())
    .unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let plain = sample();
    for coding in Coding::ALL {
        let packed = coding.encode(&plain).expect("encode");
        assert_eq!(direct(coding, &packed), plain.len());
        assert_eq!(decode(&[coding], packed.clone(), plain.len()).map(|b| b.len()).ok(), Some(plain.len()));
        let mut group = c.benchmark_group(format!("decode_{}", coding.name()));
        group.throughput(Throughput::Bytes(plain.len() as u64));
        group.bench_function("crate_direct", |b| b.iter(|| direct(coding, std::hint::black_box(&packed))));
        group.bench_function("inlet_bounded", |b| {
            b.iter(|| decode(&[coding], Bytes::clone(std::hint::black_box(&packed)), 16 << 20).map(|b| b.len()))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
