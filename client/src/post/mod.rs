//! `post FILE|-`: streams NDJSON events to `POST /events`.
//!
//! - Constant memory: a reader task groups non-blank lines into chunks of
//!   `--batch` lines and queues them in a bounded [`input::Inbox`].
//! - `--connections N` workers ([`worker`]) take chunks from the inbox, each
//!   keeping `--pipeline K` requests in flight on its connection.
//! - [`judge`] decides what each response means for its lines.
//! - This module only wires them up and prints the [`Summary`]; the engine
//!   prints nothing. On a terminal, [`progress`] draws a bar on stderr
//!   while it runs (none when stderr is not a terminal).

mod input;
mod judge;
mod progress;
mod worker;

use std::io::IsTerminal;

use std::sync::Arc;

use tokio::io::AsyncRead;
use tokio_util::sync::CancellationToken;

use crate::compress::Coding;
use crate::conn::Endpoint;
use crate::exit;
use input::Inbox;
pub use worker::Settings;
use worker::{Shared, Summary, Worker};

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
    /// Compress each request body.
    #[arg(long, value_enum)]
    compress: Option<Coding>,
    /// Check the whole input against these schemas first (as `validate`
    /// does); if any line fails, print the problem and send nothing (exit 1).
    /// The input is then read into memory before sending.
    #[command(flatten)]
    schemas: crate::validate::SchemaArgs,
}

/// Sends every line of `input`; returns what happened and the input's read
/// error, if any.
#[cfg(test)]
pub async fn post(
    input: impl AsyncRead + Unpin + Send + 'static,
    settings: Settings,
    connections: usize,
    batch: usize,
) -> (Summary, Option<std::io::Error>) {
    post_showing(input, settings, connections, batch, false).await
}

/// [`post`], with a progress bar on stderr when `progress`.
pub async fn post_showing(
    input: impl AsyncRead + Unpin + Send + 'static,
    settings: Settings,
    connections: usize,
    batch: usize,
    progress: bool,
) -> (Summary, Option<std::io::Error>) {
    let inbox = Arc::new(Inbox::new(connections * settings.pipeline * 2));
    let summary: Shared = Arc::default();
    let progress = progress::start(progress, inbox.clone(), summary.clone());
    let stop = CancellationToken::new();
    let reader = {
        let inbox = inbox.clone();
        tokio::spawn(async move { input::read_lines(input, batch, &inbox).await })
    };
    let workers: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(Worker::new(settings.clone(), inbox.clone(), summary.clone(), stop.clone()).run()))
        .collect();
    for w in workers {
        let _ = w.await;
    }
    let read_error = if stop.is_cancelled() {
        // Stopped: the rest of the input is not read (the reader may be
        // waiting for room in the inbox, or for stdin).
        reader.abort();
        None
    } else {
        match reader.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(std::io::Error::other(e)),
        }
    };
    if let Some(progress) = progress {
        progress.finish();
    }
    let mut summary = std::mem::take(&mut *summary.lock().unwrap_or_else(|e| e.into_inner()));
    summary.failed.sort_unstable();
    (summary, read_error)
}

pub async fn run(endpoint: Arc<Endpoint>, args: Args) -> u8 {
    let schemas = match args.schemas.load() {
        Ok(schemas) => schemas,
        Err(e) => {
            eprintln!("inlet-client: {e}");
            return exit::USAGE;
        }
    };
    let input: Box<dyn AsyncRead + Unpin + Send> = if let Some(schemas) = schemas {
        let name = args.input.clone();
        let body = match tokio::task::spawn_blocking(move || crate::validate::read_input(&name)).await {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => {
                eprintln!("inlet-client: {e}");
                return exit::USAGE;
            }
            Err(e) => {
                eprintln!("inlet-client: reading {} failed: {e}", args.input);
                return exit::USAGE;
            }
        };
        if let Err(problem) = crate::validate::check(&body, &schemas) {
            println!("{}", String::from_utf8_lossy(&problem.to_json()));
            eprintln!("inlet-client: {}: refused by --schemas; nothing was sent", args.input);
            return exit::REJECTED;
        }
        Box::new(std::io::Cursor::new(body))
    } else if args.input == "-" {
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
    let settings =
        Settings { endpoint, pipeline: args.pipeline as usize, retries: args.retries, compress: args.compress };
    // The bar goes to stderr, and only to a terminal: piped or redirected,
    // stderr (and stdout) carry the summary and errors alone.
    let progress = std::io::stderr().is_terminal();
    let (summary, read_error) =
        post_showing(input, settings, args.connections as usize, args.batch as usize, progress).await;
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
    if let Some(stopped) = &summary.stopped {
        eprintln!("inlet-client: stopped: {}", stopped.error);
    } else if code == exit::UNREACHABLE {
        if let Some(e) = &summary.last_error {
            eprintln!("inlet-client: {e}");
        }
    }
    code
}

/// Stopped: its code (6 `401`, 7 `403`, 8 TLS); lines lost or input
/// unread: 3; lines refused: 1; else 0.
fn exit_code(s: &Summary, read_failed: bool) -> u8 {
    if let Some(stopped) = &s.stopped {
        stopped.code
    } else if !s.failed.is_empty() || read_failed {
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
        "stopped": s.stopped.as_ref().map(|st| st.error.as_str()),
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
    if let Some(stopped) = &s.stopped {
        let _ = writeln!(out, "stopped: {} (nothing more was sent)", stopped.error);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::testserver::{self, Answer};
    use worker::Stopped;

    fn settings(addr: std::net::SocketAddr, pipeline: usize) -> Settings {
        Settings { endpoint: Arc::new(Endpoint::plain(addr.to_string())), pipeline, retries: 3, compress: None }
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
            retried: 4,
            last_error: Some("HTTP 503: busy".into()),
            stopped: None,
        };
        assert_eq!(
            to_text(&s),
            "accepted: 7\nduplicates: 1\nrejected: 1\n  line 3: #/type: is required\nfailed: 22\n  lines not acknowledged: \
             1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, ...\n"
        );
        assert_eq!(
            to_json(&s, None).to_string(),
            format!(
                r##"{{"accepted":7,"duplicates":1,"error":"HTTP 503: busy","failed":[{}],"rejected":[{{"line":3,"reason":"#/type: is required"}}],"stopped":null}}"##,
                (1..=22).map(|n: u64| n.to_string()).collect::<Vec<_>>().join(",")
            )
        );
        assert_eq!(exit_code(&s, false), exit::UNREACHABLE);
        let refused = Summary { failed: vec![], ..s.clone() };
        assert_eq!(exit_code(&refused, false), exit::REJECTED);
        assert_eq!(exit_code(&Summary::default(), false), exit::OK);
        assert_eq!(exit_code(&Summary::default(), true), exit::UNREACHABLE);
        let stopped = Summary { stopped: Some(Stopped { code: exit::FORBIDDEN, error: "HTTP 403: no".into() }), ..s };
        assert_eq!(exit_code(&stopped, false), exit::FORBIDDEN);
        assert!(to_text(&stopped).ends_with("stopped: HTTP 403: no (nothing more was sent)\n"));
        assert_eq!(to_json(&stopped, None)["stopped"], "HTTP 403: no");
    }

    /// Issue 11 §3 c: a worker waiting for input must not stop another from
    /// reading the answers to what it already sent.
    #[tokio::test]
    async fn a_worker_waiting_for_input_does_not_block_another() {
        let addr = testserver::start(|_, _| testserver::accepted(1)).await;
        let inbox = Arc::new(Inbox::new(16));
        let summary: Shared = Arc::default();
        for _ in 0..2 {
            tokio::spawn(
                Worker::new(settings(addr, 2), inbox.clone(), summary.clone(), CancellationToken::new()).run(),
            );
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

    /// Issue 13 §6: a `429` with `Retry-After: 1` pauses the worker at
    /// least that long, then what was refused is sent again: every event
    /// ends up accepted exactly once, each request carrying the token.
    #[tokio::test]
    async fn a_429_waits_for_retry_after_then_resends_what_was_refused() {
        use std::sync::Mutex;
        use std::time::Instant;
        #[derive(Default)]
        struct Seen {
            requests: usize,
            refused: Option<(Instant, Vec<u8>)>,
            resent_at: Option<Instant>,
            accepted: Vec<String>,
            unauthorized: usize,
        }
        let seen = Arc::new(Mutex::new(Seen::default()));
        let server_seen = seen.clone();
        let addr = testserver::start_with(None, move |_, req| {
            let mut seen = server_seen.lock().unwrap();
            if req.header("authorization") != Some("Bearer s3cret") {
                seen.unauthorized += 1;
                return testserver::problem(401, "", "unknown token");
            }
            seen.requests += 1;
            if seen.refused.as_ref().is_some_and(|(_, body)| *body == req.body) {
                seen.resent_at = Some(Instant::now());
            }
            if seen.requests == 2 {
                seen.refused = Some((Instant::now(), req.body.clone()));
                return testserver::problem(429, "Retry-After: 1\r\n", "over quota");
            }
            let body = String::from_utf8(req.body.clone()).unwrap();
            seen.accepted.extend(body.lines().map(str::to_string));
            testserver::accepted(body.lines().count())
        })
        .await;
        let token: crate::conn::Token = "s3cret".parse().unwrap();
        let endpoint = Arc::new(Endpoint::plain(addr.to_string()).with_token(&token));
        // One try only: the paced retry must not use it up.
        let settings = Settings { endpoint, pipeline: 2, retries: 0, compress: None };
        let input = std::io::Cursor::new(events(6).into_bytes());
        let (summary, error) = post(input, settings, 1, 1).await;
        assert!(error.is_none());
        assert_eq!((summary.accepted, summary.rejected.len(), summary.failed.len()), (6, 0, 0), "{summary:?}");
        // The one line refused with 429 was sent again, once.
        assert_eq!(summary.retried, 1);
        let seen = seen.lock().unwrap();
        let mut accepted = seen.accepted.clone();
        accepted.sort();
        let mut expected: Vec<String> = events(6).lines().map(str::to_string).collect();
        expected.sort();
        assert_eq!(accepted, expected, "every event accepted exactly once");
        assert_eq!((seen.requests, seen.unauthorized), (7, 0));
        let waited = seen.resent_at.unwrap() - seen.refused.as_ref().unwrap().0;
        assert!(waited >= Duration::from_secs(1), "resent after {waited:?}");
    }

    /// The real binary, built beside this test executable (`cargo build
    /// --bins`; `cargo test -p inlet-client` builds it for its CLI tests).
    fn client_binary() -> std::path::PathBuf {
        let exe = std::env::current_exe().unwrap();
        let path = exe.parent().and_then(|d| d.parent()).unwrap().join("inlet-client");
        assert!(path.exists(), "{} is not built: cargo build -p inlet-client --bins", path.display());
        path
    }

    /// Issue 19 §3: the progress bar is drawn on a terminal (script(1)
    /// gives the client one) and never when stderr is piped: a script sees
    /// the summary alone, byte for byte. The input stays open for a while
    /// so that the bar is drawn a few times before the end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_progress_bar_is_shown_on_a_terminal_only() {
        let addr = testserver::start(|_, _| testserver::accepted(1)).await;
        let command = format!(
            "(printf '{{\"id\":\"1\"}}\\n{{\"id\":\"2\"}}\\n\\n{{\"id\":\"3\"}}\\n'; sleep 1.5) | '{}' --server {addr} post -",
            client_binary().display()
        );
        let piped = {
            let command = command.clone();
            tokio::task::spawn_blocking(move || std::process::Command::new("sh").args(["-c", &command]).output())
        };
        let on_a_terminal = tokio::task::spawn_blocking(move || {
            std::process::Command::new("script").args(["-qec", &command, "/dev/null"]).output()
        });
        let piped = piped.await.unwrap().expect("run sh");
        let (out, err) = (String::from_utf8_lossy(&piped.stdout), String::from_utf8_lossy(&piped.stderr));
        assert_eq!((out.as_ref(), err.as_ref()), ("accepted: 3\nduplicates: 0\nrejected: 0\nfailed: 0\n", ""));
        assert!(piped.status.success(), "{piped:?}");
        let tty = on_a_terminal.await.unwrap().expect("run script(1)");
        let screen = String::from_utf8_lossy(&tty.stdout);
        assert!(screen.contains("3 read, 3 accepted, 0 refused, 0 retried, "), "{screen:?}");
        assert!(screen.contains(" lines/s"), "{screen:?}");
        assert!(screen.contains("accepted: 3\r\nduplicates: 0\r\nrejected: 0\r\nfailed: 0\r\n"), "{screen:?}");
    }

    /// Issue 13 §6: a `401` stops every worker at once: nothing is sent
    /// again, the input (still open) is not read further, and the summary
    /// says why with the exit code of a `401`.
    #[tokio::test]
    async fn a_401_stops_everything_at_once() {
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = requests.clone();
        let addr = testserver::start(move |_, _| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            testserver::problem(401, "WWW-Authenticate: Bearer realm=\"inlet\"\r\n", "missing or unknown token")
        })
        .await;
        let (mut writer, reader) = tokio::io::duplex(1 << 16);
        tokio::io::AsyncWriteExt::write_all(&mut writer, events(50).as_bytes()).await.unwrap();
        // `writer` stays open: the input never ends.
        let settings = Settings { retries: 5, ..settings(addr, 1) };
        let (summary, error) =
            tokio::time::timeout(Duration::from_secs(20), post(reader, settings, 2, 1)).await.expect("post stopped");
        assert!(error.is_none());
        assert_eq!(
            summary.stopped,
            Some(Stopped { code: exit::UNAUTHORIZED, error: "HTTP 401: missing or unknown token".into() })
        );
        assert_eq!(summary.accepted, 0);
        assert_eq!(exit_code(&summary, false), exit::UNAUTHORIZED);
        // At most the first request of each connection; none sent again.
        let sent = requests.load(std::sync::atomic::Ordering::SeqCst);
        assert!((1..=2).contains(&sent), "{sent} requests");
        drop(writer);
    }

    /// Issue 14 §5: `--compress` sends the body compressed with its
    /// `Content-Encoding`; the server decodes exactly the NDJSON lines.
    #[tokio::test]
    async fn post_compresses_each_body() {
        use std::io::Read;
        for coding in [Coding::Gzip, Coding::Zstd] {
            let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
            let seen = lines.clone();
            let addr = testserver::start_with(None, move |_, req| {
                let decoded = match req.header("content-encoding") {
                    Some("gzip") => {
                        let mut out = String::new();
                        flate2::read::GzDecoder::new(&req.body[..]).read_to_string(&mut out).unwrap();
                        out
                    }
                    Some("zstd") => String::from_utf8(zstd::decode_all(&req.body[..]).unwrap()).unwrap(),
                    other => panic!("Content-Encoding {other:?}"),
                };
                let n = decoded.lines().count();
                seen.lock().unwrap().extend(decoded.lines().map(str::to_string));
                testserver::accepted(n)
            })
            .await;
            let settings = Settings { compress: Some(coding), ..settings(addr, 2) };
            let (summary, _) = post(std::io::Cursor::new(events(30).into_bytes()), settings, 1, 10).await;
            assert_eq!((summary.accepted, summary.failed.len()), (30, 0), "{coding:?}: {summary:?}");
            let mut got = lines.lock().unwrap().clone();
            got.sort();
            let mut want: Vec<String> = events(30).lines().map(str::to_string).collect();
            want.sort();
            assert_eq!(got, want, "{coding:?}");
        }
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
        let settings = Settings { retries: 0, ..settings(addr, 1) };
        let worker =
            tokio::spawn(Worker::new(settings, inbox.clone(), summary.clone(), CancellationToken::new()).run());
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
