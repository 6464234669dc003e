//! The SQLite store when the disk fills (issue 11 §2.1): many writers fill a
//! capped store, and every answer is checked against what the store holds.
//! A `202` means every event of the batch is stored exactly once; a `503`
//! means none of them is; `/stats` counts what is stored.

use std::sync::{Arc, Mutex};

use inlet_shared::http::ClientRequest;
use inlet_tests::{json, stored_ids, Server};

/// The ids of one batch and the status it was answered with.
type Answers = Arc<Mutex<Vec<(Vec<String>, u16)>>>;

const WRITERS: usize = 16;
const BATCH: usize = 25;

/// One NDJSON batch of `BATCH` events of about 300 bytes each.
fn batch(writer: usize, n: usize) -> (Vec<String>, String) {
    let ids: Vec<String> = (0..BATCH).map(|i| format!("w{writer}-b{n}-e{i}")).collect();
    let lines: Vec<String> = ids
        .iter()
        .map(|id| {
            format!(
                r#"{{"specversion":"1.0","id":"{id}","source":"/fill","type":"t.fill","data":"{}"}}"#,
                "p".repeat(240)
            )
        })
        .collect();
    (ids, lines.join("\n"))
}

#[test]
fn a_refused_batch_stored_nothing_when_the_disk_fills() {
    // `--sync normal` only spares the fsyncs: what SQLite rolls back on
    // SQLITE_FULL does not depend on it.
    let s = Server::start(&["--store", "sqlite", "--max-store-bytes", "3000000", "--sync", "normal"]);
    let answers: Answers = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (addr, answers) = (s.addr, answers.clone());
            std::thread::spawn(move || {
                let mut conn = inlet_tests::Conn::open(addr);
                let mut refused_in_a_row = 0;
                // Keep writing until the store has refused this writer a few
                // times in a row: by then the cap is reached.
                for n in 0..2000 {
                    let (ids, body) = batch(w, n);
                    conn.send(ClientRequest::post("/events", "application/x-ndjson", body));
                    let res = conn.recv();
                    assert!(matches!(res.status, 202 | 503), "unexpected status {}", res.status);
                    if res.status == 202 {
                        assert_eq!(json(&res), serde_json::json!({"accepted": BATCH, "duplicates": 0}));
                        refused_in_a_row = 0;
                    } else {
                        let problem = json(&res);
                        assert_eq!(problem["type"], "urn:inlet:problem:store-unavailable");
                        // A short reason, not SQLite's text.
                        assert_eq!(problem["detail"], "the store is full; nothing was stored, retry later");
                        assert_eq!(res.headers.get_str("retry-after"), Some("1"));
                        refused_in_a_row += 1;
                    }
                    answers.lock().unwrap().push((ids, res.status));
                    if refused_in_a_row == 5 {
                        return;
                    }
                }
                panic!("writer {w}: the capped store never filled up");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(s.get("/health").status, 200);
    let stored = stored_ids(&s);
    let answers = answers.lock().unwrap();
    let mut acknowledged = 0;
    let mut refused = 0;
    for (ids, status) in answers.iter() {
        for id in ids {
            let n = stored.get(id).copied().unwrap_or(0);
            if *status == 202 {
                assert_eq!(n, 1, "{id} was acknowledged and must be stored exactly once");
            } else {
                assert_eq!(n, 0, "{id} was in a batch answered 503 and must not be stored");
            }
        }
        if *status == 202 {
            acknowledged += ids.len();
        } else {
            refused += 1;
        }
    }
    // The cap holds a few thousand such events (6,250 in a run here).
    assert!(acknowledged >= 2_000, "only {acknowledged} events acknowledged before the store was full");
    assert!(refused >= WRITERS * 5, "every writer was refused: {refused}");
    assert_eq!(stored.len(), acknowledged, "nothing is stored that was not acknowledged");
    assert_eq!(s.stats()["accepted"], acknowledged as u64);
}
