//! `post FILE|-`: streams NDJSON events to `POST /events`.
//!
//! - Constant memory: a reader task groups non-blank lines into chunks of
//!   `--batch` lines and queues them in a bounded [`input::Inbox`].
//! - `--connections N` workers ([`worker`]) take chunks from the inbox, each
//!   keeping `--pipeline K` requests in flight on its connection.
//! - [`judge`] decides what each response means for its lines.
//! - This module only wires them up and prints the [`Summary`]; the engine
//!   prints nothing.

mod input;
mod judge;
mod worker;

use std::sync::Arc;

use tokio::io::AsyncRead;

use crate::exit;
use input::Inbox;
use worker::{Settings, Shared, Summary, Worker};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// NDJSON file to send, or `-` for standard input.
    input: String,
    /// Connections to spread the lines over.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// Requests in flight on each connection.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pipeline: u32,
    /// Events per request (sent as one NDJSON body).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch: u32,
    /// Attempts per request before its lines count as failed.
    #[arg(long, default_value_t = 10)]
    retries: u32,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Sends every line of `input`; returns what happened and the input's read
/// error, if any.
pub async fn post(
    input: impl AsyncRead + Unpin + Send + 'static,
    settings: Settings,
    connections: usize,
    batch: usize,
) -> (Summary, Option<std::io::Error>) {
    let inbox = Arc::new(Inbox::new(connections * settings.pipeline * 2));
    let summary: Shared = Arc::default();
    let reader = {
        let inbox = inbox.clone();
        tokio::spawn(async move { input::read_lines(input, batch, &inbox).await })
    };
    let workers: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(Worker::new(settings.clone(), inbox.clone(), summary.clone()).run()))
        .collect();
    for w in workers {
        let _ = w.await;
    }
    let read_error = match reader.await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(std::io::Error::other(e)),
    };
    let mut summary = std::mem::take(&mut *summary.lock().unwrap_or_else(|e| e.into_inner()));
    summary.failed.sort_unstable();
    (summary, read_error)
}

pub async fn run(server: &str, args: Args) -> u8 {
    let input: Box<dyn AsyncRead + Unpin + Send> = if args.input == "-" {
        Box::new(tokio::io::stdin())
    } else {
        match tokio::fs::File::open(&args.input).await {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("inlet-client: cannot open {}: {e}", args.input);
                return exit::USAGE;
            }
        }
    };
    let settings = Settings { server: server.to_string(), pipeline: args.pipeline as usize, retries: args.retries };
    let (summary, read_error) = post(input, settings, args.connections as usize, args.batch as usize).await;
    let read_error = read_error.map(|e| e.to_string());
    if args.json {
        println!("{}", to_json(&summary, read_error.as_deref()));
    } else {
        print!("{}", to_text(&summary));
    }
    if let Some(e) = &read_error {
        eprintln!("inlet-client: reading {} failed: {e}", args.input);
    }
    let code = exit_code(&summary, read_error.is_some());
    if code == exit::UNREACHABLE {
        if let Some(e) = &summary.last_error {
            eprintln!("inlet-client: {e}");
        }
    }
    code
}

/// Lines lost or input unread: 3; lines refused: 1; else 0.
fn exit_code(s: &Summary, read_failed: bool) -> u8 {
    if !s.failed.is_empty() || read_failed {
        exit::UNREACHABLE
    } else if !s.rejected.is_empty() {
        exit::REJECTED
    } else {
        exit::OK
    }
}

fn to_json(s: &Summary, read_error: Option<&str>) -> serde_json::Value {
    let rejected: Vec<_> = s.rejected.iter().map(|(l, r)| serde_json::json!({"line": l, "reason": r})).collect();
    serde_json::json!({
        "accepted": s.accepted,
        "duplicates": s.duplicates,
        "rejected": rejected,
        "failed": s.failed,
        "error": s.last_error.as_deref().or(read_error),
    })
}

fn to_text(s: &Summary) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "accepted: {}", s.accepted);
    let _ = writeln!(out, "duplicates: {}", s.duplicates);
    let _ = writeln!(out, "rejected: {}", s.rejected.len());
    for (line, reason) in &s.rejected {
        let _ = writeln!(out, "  line {line}: {reason}");
    }
    let _ = writeln!(out, "failed: {}", s.failed.len());
    if !s.failed.is_empty() {
        let shown: Vec<String> = s.failed.iter().take(20).map(u64::to_string).collect();
        let more = if s.failed.len() > 20 { ", ..." } else { "" };
        let _ = writeln!(out, "  lines not acknowledged: {}{more}", shown.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::testserver::{self, Answer};

    fn settings(addr: std::net::SocketAddr, pipeline: usize) -> Settings {
        Settings { server: addr.to_string(), pipeline, retries: 3 }
    }

    fn events(count: usize) -> String {
        (1..=count).map(|i| format!("{{\"id\":\"{i}\"}}\n")).collect()
    }

    #[test]
    fn the_text_and_json_summaries() {
        let s = Summary {
            accepted: 7,
            duplicates: 1,
            rejected: BTreeMap::from([(3, "#/type: is required".to_string())]),
            failed: (1..=22).collect(),
            last_error: Some("HTTP 503: busy".into()),
        };
        assert_eq!(
            to_text(&s),
            "accepted: 7\nduplicates: 1\nrejected: 1\n  line 3: #/type: is required\nfailed: 22\n  lines not acknowledged: \
             1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, ...\n"
        );
        assert_eq!(
            to_json(&s, None).to_string(),
            format!(
                r##"{{"accepted":7,"duplicates":1,"error":"HTTP 503: busy","failed":[{}],"rejected":[{{"line":3,"reason":"#/type: is required"}}]}}"##,
                (1..=22).map(|n: u64| n.to_string()).collect::<Vec<_>>().join(",")
            )
        );
        assert_eq!(exit_code(&s, false), exit::UNREACHABLE);
        let refused = Summary { failed: vec![], ..s.clone() };
        assert_eq!(exit_code(&refused, false), exit::REJECTED);
        assert_eq!(exit_code(&Summary::default(), false), exit::OK);
        assert_eq!(exit_code(&Summary::default(), true), exit::UNREACHABLE);
    }

    /// Issue 11 §3 c: a worker waiting for input must not stop another from
    /// reading the answers to what it already sent.
    #[tokio::test]
    async fn a_worker_waiting_for_input_does_not_block_another() {
        let addr = testserver::start(|_, _| testserver::accepted(1)).await;
        let inbox = Arc::new(Inbox::new(16));
        let summary: Shared = Arc::default();
        for _ in 0..2 {
            tokio::spawn(Worker::new(settings(addr, 2), inbox.clone(), summary.clone()).run());
        }
        // Let both workers start waiting for input first.
        tokio::time::sleep(Duration::from_millis(200)).await;
        inbox.push(input::Chunk::new(vec![input::Line { number: 1, text: "{}".into() }])).await;
        // The input stays open: one worker waits for more while the other
        // must still get its answer.
        let acknowledged = async {
            while summary.lock().unwrap().accepted < 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        assert!(tokio::time::timeout(Duration::from_secs(10), acknowledged).await.is_ok(), "the answer was never read");
        inbox.close();
    }

    /// A `408` is retried, never reported as a refusal; a connection closed
    /// with requests in flight has them resent.
    #[tokio::test]
    async fn timeouts_and_dropped_connections_are_retried() {
        // The first connection's first request is answered 408 and closed
        // (as the server's header timeout does); on every connection the
        // third request is read and dropped unanswered.
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let addr = testserver::start(move |n, _| {
            let first_connection = n == 0 && connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            match n {
                _ if first_connection => Answer::Reply(
                    "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_string(),
                ),
                0 | 1 => testserver::accepted(1),
                _ => Answer::Close,
            }
        })
        .await;
        let input = std::io::Cursor::new(events(5).into_bytes());
        let (summary, error) = post(input, settings(addr, 1), 1, 1).await;
        assert!(error.is_none());
        assert_eq!((summary.accepted, summary.rejected.len(), summary.failed.len()), (5, 0, 0), "{summary:?}");
    }

    /// An idle connection the server closes while the worker waits for
    /// input (its idle timeout) is dropped, not used: the next chunk goes on
    /// a new connection without spending an attempt.
    #[tokio::test]
    async fn an_idle_connection_closed_by_the_server_is_not_used() {
        let addr = testserver::start(|_, _| match testserver::accepted(1) {
            Answer::Reply(bytes) => Answer::ReplyThenClose(bytes),
            other => other,
        })
        .await;
        let inbox = Arc::new(Inbox::new(4));
        let summary: Shared = Arc::default();
        let settings = Settings { server: addr.to_string(), pipeline: 1, retries: 0 };
        let worker = tokio::spawn(Worker::new(settings, inbox.clone(), summary.clone()).run());
        let line = |number| input::Chunk::new(vec![input::Line { number, text: "{}".into() }]);
        inbox.push(line(1)).await;
        // Long enough for the answer and the server's close to arrive.
        tokio::time::sleep(Duration::from_millis(300)).await;
        inbox.push(line(2)).await;
        inbox.close();
        tokio::time::timeout(Duration::from_secs(10), worker).await.unwrap().unwrap();
        let s = summary.lock().unwrap().clone();
        assert_eq!((s.accepted, s.failed.len(), s.rejected.len()), (2, 0, 0), "{s:?}");
    }
}
