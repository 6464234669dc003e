//! `nats-publisher --url nats://127.0.0.1:4222 --replicas 1 --batch 1
//! --in-flight 64 --duration 8`: creates stream `RAW` (file storage,
//! `allow_atomic`), then for `--duration` seconds keeps `--in-flight`
//! publishes (or atomic batches of `--batch`) in flight, each awaited for its
//! ack, and prints `{"events_per_s": .., "acked": .., "errors": ..}`.
//!
//! To find what of inlet's messages NATS pays for, the messages can take
//! inlet's shape: `--id-len 64` sends each `Nats-Msg-Id` as that many hex
//! digits (inlet's ids are a SHA-256 in hex) instead of a short counter, and
//! `--subject raw.events.inlet.bench.reading` publishes to that subject
//! (inlet's has five tokens) instead of `raw.single` / `raw.batch`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage as Publish, stream};
use async_nats::HeaderMap;

struct Args {
    url: String,
    replicas: usize,
    batch: usize,
    in_flight: usize,
    duration: Duration,
    size: usize,
    id_len: usize,
    subject: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        url: "nats://127.0.0.1:4222".into(),
        replicas: 1,
        batch: 1,
        in_flight: 64,
        duration: Duration::from_secs(8),
        size: 230,
        id_len: 0,
        subject: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || value.parse::<u64>().unwrap_or_else(|_| panic!("{flag}: not a number: {value}"));
        match flag.as_str() {
            "--url" => a.url = value.clone(),
            "--replicas" => a.replicas = number() as usize,
            "--batch" => a.batch = number() as usize,
            "--in-flight" => a.in_flight = number() as usize,
            "--duration" => a.duration = Duration::from_secs(number()),
            "--size" => a.size = number() as usize,
            "--id-len" => a.id_len = number() as usize,
            "--subject" => a.subject = Some(value.clone()),
            _ => panic!("unknown flag {flag}"),
        }
    }
    a
}

#[tokio::main]
async fn main() {
    let a = args();
    let client = async_nats::connect(&a.url).await.expect("connect");
    let js = jetstream::new(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let config = stream::Config {
            name: "RAW".into(),
            subjects: vec!["raw.>".into()],
            storage: stream::StorageType::File,
            num_replicas: a.replicas,
            allow_atomic_publish: true,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        match js.get_or_create_stream(config).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("stream not ready yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no stream: {e}"),
        }
    }
    let payload = bytes::Bytes::from(vec![b'x'; a.size]);
    let next_id = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + a.duration;
    let workers: Vec<_> = (0..a.in_flight)
        .map(|w| {
            let (client, js, payload) = (client.clone(), js.clone(), payload.clone());
            let (next_id, acked, errors) = (next_id.clone(), acked.clone(), errors.clone());
            let batch = a.batch;
            let id_len = a.id_len;
            let single_subject = a.subject.clone().unwrap_or_else(|| "raw.single".into());
            let batch_subject = a.subject.clone().unwrap_or_else(|| "raw.batch".into());
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < end {
                    n += 1;
                    let ok = if batch == 1 {
                        let id = message_id(&next_id, id_len);
                        let publish = Publish::build().payload(payload.clone()).message_id(id);
                        match js.send_publish(single_subject.clone(), publish).await {
                            Ok(ack) => ack.await.is_ok(),
                            Err(_) => false,
                        }
                    } else {
                        let shape = (batch_subject.as_str(), id_len);
                        publish_batch(&client, &js, &format!("w{w}-{n}"), batch, &payload, &next_id, shape).await
                    };
                    if ok {
                        acked.fetch_add(batch as u64, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let acked = acked.load(Ordering::Relaxed);
    println!(
        "{{\"events_per_s\": {:.1}, \"acked\": {acked}, \"errors\": {}}}",
        acked as f64 / elapsed,
        errors.load(Ordering::Relaxed)
    );
}

/// One atomic batch: all but the last message without a reply, the last
/// with the commit header, its ack awaited.
async fn publish_batch(
    client: &async_nats::Client,
    js: &jetstream::Context,
    batch_id: &str,
    size: usize,
    payload: &bytes::Bytes,
    next_id: &AtomicU64,
    (subject, id_len): (&str, usize),
) -> bool {
    for seq in 1..size {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", message_id(next_id, id_len).as_str());
        headers.insert("Nats-Batch-Id", batch_id);
        headers.insert("Nats-Batch-Sequence", seq.to_string().as_str());
        if client.publish_with_headers(subject.to_string(), headers, payload.clone()).await.is_err() {
            return false;
        }
    }
    let commit = Publish::build()
        .payload(payload.clone())
        .message_id(message_id(next_id, id_len))
        .header("Nats-Batch-Id", batch_id)
        .header("Nats-Batch-Sequence", size.to_string().as_str())
        .header("Nats-Batch-Commit", "1");
    match js.send_publish(subject.to_string(), commit).await {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    }
}

/// The next message id: the counter in decimal, or with `len` above 0 that
/// many hex digits (the counter times an odd constant, so still unique,
/// repeated to the length).
fn message_id(next_id: &AtomicU64, len: usize) -> String {
    let n = next_id.fetch_add(1, Ordering::Relaxed);
    if len == 0 {
        return n.to_string();
    }
    let word = format!("{:016x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    word.repeat(len.div_ceil(16))[..len].to_string()
}
