//! Access control end to end (issue 13): tokens made by `inlet-server token
//! new`, every refusal (and that it stores nothing), Bearer and Basic,
//! `SIGHUP` reloads on open connections, quotas with `429`, the client
//! against them, no secret in the logs, and the safe default.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use inlet_shared::http::{ClientRequest, ClientResponse};
use inlet_tests::{binary, client, json, Server, PATIENCE};

/// A token made by the real `inlet-server token new`.
struct Token {
    secret: String,
    /// The `[[token]]` entry it printed, plus any lines a test adds.
    entry: String,
}

/// A token from the real `inlet-server token new`.
fn new_token(name: &str, scopes: &str) -> Token {
    let (secret, entry) = inlet_tests::new_token(name, scopes);
    Token { secret, entry }
}

impl Token {
    fn with(mut self, line: &str) -> Token {
        self.entry.push_str(line);
        self.entry.push('\n');
        self
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.secret)
    }
}

fn write_tokens(path: &Path, tokens: &[&Token]) {
    let text: String = tokens.iter().map(|t| format!("{}\n", t.entry)).collect();
    std::fs::write(path, text).expect("write tokens file");
}

/// A tokens file in its own directory (kept alive by the returned guard).
fn tokens_file(tokens: &[&Token]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tokens.toml");
    write_tokens(&path, tokens);
    (dir, path)
}

fn event(id: &str, source: &str) -> String {
    format!(r#"{{"specversion":"1.0","id":"{id}","source":"{source}","type":"t.auth"}}"#)
}

fn post(target: &str, body: String, authorization: Option<&str>) -> ClientRequest {
    let mut req = ClientRequest::post(target.to_string(), "application/cloudevents-batch+json", body);
    if let Some(value) = authorization {
        req = req.header(Bytes::from_static(b"Authorization"), Bytes::from(value.to_string()));
    }
    req
}

fn get(target: &str, authorization: Option<&str>) -> ClientRequest {
    let mut req = ClientRequest::get(target.to_string());
    if let Some(value) = authorization {
        req = req.header(Bytes::from_static(b"Authorization"), Bytes::from(value.to_string()));
    }
    req
}

fn header<'a>(res: &'a ClientResponse, name: &str) -> Option<&'a str> {
    res.headers.get_str(name)
}

/// The problem's `type`, after checking the media type and the status field.
fn problem_type(res: &ClientResponse) -> String {
    assert_eq!(header(res, "content-type"), Some("application/problem+json"));
    let body = json(res);
    assert_eq!(body["status"], res.status);
    body["type"].as_str().expect("type").to_string()
}

/// Every stored event (read with `reader`), as (id, token).
fn stored(s: &Server, reader: &Token) -> Vec<(String, Option<String>)> {
    let res = s.request(get("/events?limit=10000", Some(&reader.bearer())));
    assert_eq!(res.status, 200);
    json(&res)["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| (e["event"]["id"].as_str().unwrap_or("").to_string(), e["token"].as_str().map(String::from)))
        .collect()
}

/// Base64 (RFC 4648, padded), for Basic credentials.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Waits until the server's stderr contains `text` (`count` times).
fn wait_for_log(s: &Server, text: &str, count: usize) {
    let deadline = Instant::now() + PATIENCE;
    while s.stderr().matches(text).count() < count {
        assert!(Instant::now() < deadline, "no {text:?} in the log:\n{}", s.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Tokens {
    writer: Token,
    reader: Token,
    scraper: Token,
}

fn three_tokens() -> Tokens {
    Tokens {
        writer: new_token("writer", "write").with(r#"sources = ["/shop/"]"#),
        reader: new_token("reader", "read"),
        scraper: new_token("scraper", "metrics"),
    }
}

#[test]
fn token_new_prints_the_secret_once_then_the_entry() {
    let out = Command::new(binary("inlet-server"))
        .args(["token", "new", "--name", "shop", "--scope", "write,read"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let secret = lines[0];
    assert!(secret.starts_with("inlet_") && secret.len() == "inlet_".len() + 43, "{secret}");
    assert_eq!(stdout.matches(secret).count(), 1, "the secret is printed once: {stdout}");
    assert!(lines[1].starts_with("# ^ the secret"), "{stdout}");
    assert!(stdout.contains("[[token]]\nname = \"shop\"\nsha256 = \""), "{stdout}");
    assert!(stdout.ends_with("scopes = [\"write\", \"read\"]\n"), "{stdout}");
    // A bad scope is a usage error, and nothing is printed on stdout.
    let bad = Command::new(binary("inlet-server"))
        .args(["token", "new", "--name", "shop", "--scope", "admin"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    assert!(bad.stdout.is_empty());
    let bad = Command::new(binary("inlet-server"))
        .args(["token", "new", "--name", "a name", "--scope", "write"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    assert!(bad.stdout.is_empty());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--name must be"), "{bad:?}");
}

#[test]
fn every_refusal_is_answered_and_stores_nothing() {
    let t = three_tokens();
    let (_dir, path) = tokens_file(&[&t.writer, &t.reader, &t.scraper]);
    let s = Server::start(&["--tokens", path.to_str().unwrap()]);
    let batch = |ids: &[(&str, &str)]| {
        format!("[{}]", ids.iter().map(|(id, source)| event(id, source)).collect::<Vec<_>>().join(","))
    };

    // No token, a wrong one, an unknown scheme, a malformed Bearer: 401.
    let wrong = format!("Bearer {}x", t.writer.secret);
    for auth in [None, Some(wrong.as_str()), Some("Digest abc"), Some("Bearer a b")] {
        let res = s.request(post("/events", batch(&[("a", "/shop/1")]), auth));
        assert_eq!(res.status, 401, "{auth:?}");
        assert_eq!(header(&res, "www-authenticate"), Some("Bearer realm=\"inlet\""));
        assert_eq!(problem_type(&res), "urn:inlet:problem:unauthorized");
    }
    // Two Authorization fields, even both valid: 401.
    let twice = post("/events", batch(&[("a", "/shop/1")]), Some(&t.writer.bearer()))
        .header(Bytes::from_static(b"Authorization"), Bytes::from(t.writer.bearer()));
    let res = s.request(twice);
    assert_eq!(res.status, 401);
    assert!(json(&res)["detail"].as_str().unwrap().contains("more than one Authorization"));

    // The right token without the scope: 403.
    for token in [&t.reader, &t.scraper] {
        let res = s.request(post("/events", batch(&[("a", "/shop/1")]), Some(&token.bearer())));
        assert_eq!(res.status, 403);
        assert_eq!(problem_type(&res), "urn:inlet:problem:forbidden");
        assert_eq!(header(&res, "www-authenticate"), None);
    }
    let res = s.request(post("/echo", "{}".into(), Some(&t.reader.bearer())));
    assert_eq!(res.status, 403);

    // A batch with one source outside the prefixes: 403 pointing at it.
    let res = s.request(post("/events", batch(&[("a", "/shop/1"), ("b", "/other/1")]), Some(&t.writer.bearer())));
    assert_eq!(res.status, 403);
    assert_eq!(problem_type(&res), "urn:inlet:problem:source-forbidden");
    let errors = json(&res)["errors"].as_array().unwrap().clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["pointer"], "#/1/source");
    // `/shop` without the slash is outside `/shop/`.
    let res = s.request(post("/events", batch(&[("c", "/shop")]), Some(&t.writer.bearer())));
    assert_eq!(res.status, 403);

    // Reads and scrapes need their scopes.
    assert_eq!(s.request(get("/events", None)).status, 401);
    assert_eq!(s.request(get("/events", Some(&t.writer.bearer()))).status, 403);
    assert_eq!(s.request(get("/stats", None)).status, 401);
    assert_eq!(s.request(get("/stats", Some(&t.scraper.bearer()))).status, 403);
    assert_eq!(s.request(get("/metrics", Some(&t.reader.bearer()))).status, 403);
    assert_eq!(s.request(get("/metrics", Some(&t.scraper.bearer()))).status, 200);
    let mut head = get("/events", None);
    head.method = inlet_shared::http::Method::Head;
    assert_eq!(s.request(head).status, 401);
    // Open: /health and /openapi.yaml; unknown paths are 404, not 401.
    assert_eq!(s.request(get("/health", None)).status, 200);
    assert_eq!(s.request(get("/openapi.yaml", None)).status, 200);
    assert_eq!(s.request(get("/nowhere", None)).status, 404);

    // `Expect: 100-continue` without a token: refused from the head, no
    // `100`, and the body is never read.
    let mut conn = s.connect();
    conn.send_raw(
        b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents-batch+json\r\n\
          Content-Length: 100000\r\nExpect: 100-continue\r\n\r\n",
    );
    let res = conn.recv();
    assert_eq!(res.status, 401);
    assert_eq!(header(&res, "www-authenticate"), Some("Bearer realm=\"inlet\""));

    assert_eq!(stored(&s, &t.reader), Vec::<(String, Option<String>)>::new(), "no refusal stored anything");
    let stats = json(&s.request(get("/stats", Some(&t.reader.bearer()))));
    assert_eq!(stats["accepted"], 0);
    assert_eq!(stats["rejected"]["unauthorized"], 9, "{stats}");
    assert_eq!(stats["tokens"]["writer"]["refused_requests"], 3, "{stats}");
    assert_eq!(stats["tokens"]["writer"]["refused_events"], 3, "{stats}");
    assert_eq!(stats["tokens"]["reader"]["refused_requests"], 3, "{stats}");
    assert_eq!(stats["tokens"]["scraper"]["refused_requests"], 2, "{stats}");
}

#[test]
fn bearer_and_basic_both_write_and_each_event_names_its_token() {
    let t = three_tokens();
    let other = new_token("other", "write,read");
    let (_dir, path) = tokens_file(&[&t.writer, &t.reader, &t.scraper, &other]);
    let s = Server::start(&["--tokens", path.to_str().unwrap()]);
    let one = |id: &str, source: &str| format!("[{}]", event(id, source));

    assert_eq!(s.request(post("/events", one("bearer", "/shop/a"), Some(&t.writer.bearer()))).status, 202);
    let lower = format!("bearer {}", t.writer.secret);
    assert_eq!(s.request(post("/events", one("lower", "/shop/a"), Some(&lower))).status, 202);
    let basic = format!("Basic {}", base64(format!("{}:", t.writer.secret).as_bytes()));
    assert_eq!(s.request(post("/events", one("basic", "/shop/a"), Some(&basic))).status, 202);
    let with_password = format!("Basic {}", base64(format!("{}:ignored", other.secret).as_bytes()));
    assert_eq!(s.request(post("/events", one("other", "/any"), Some(&with_password))).status, 202);
    // Basic with an unknown secret is 401 like Bearer.
    let unknown = format!("Basic {}", base64(b"inlet_nobody:"));
    assert_eq!(s.request(post("/events", one("x", "/shop/a"), Some(&unknown))).status, 401);

    let all = stored(&s, &t.reader);
    let expected: Vec<(String, Option<String>)> = [("bearer", "writer"), ("lower", "writer"), ("basic", "writer")]
        .iter()
        .chain(&[("other", "other")])
        .map(|(id, token)| (id.to_string(), Some(token.to_string())))
        .collect();
    assert_eq!(all, expected);
    let res = s.request(get("/events?token=other", Some(&t.reader.bearer())));
    let events = json(&res)["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"]["id"], "other");
    assert_eq!(events[0]["token"], "other");
    let res = s.request(get("/events?token=reader", Some(&t.reader.bearer())));
    assert_eq!(json(&res)["events"], serde_json::json!([]));

    let stats = json(&s.request(get("/stats", Some(&t.reader.bearer()))));
    assert_eq!(stats["tokens"]["writer"]["accepted"], 3, "{stats}");
    assert_eq!(stats["tokens"]["other"]["accepted"], 1, "{stats}");
    let metrics = s.request(get("/metrics", Some(&t.scraper.bearer())));
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(text.contains("inlet_token_events_total{token=\"writer\",outcome=\"accepted\"} 3\n"), "{text}");
    assert!(text.contains("inlet_token_events_total{token=\"other\",outcome=\"accepted\"} 1\n"), "{text}");
}

#[test]
fn a_token_revoked_by_sighup_is_refused_on_a_connection_opened_before() {
    let t = three_tokens();
    let newcomer = new_token("newcomer", "write");
    let (_dir, path) = tokens_file(&[&t.writer, &t.reader]);
    let s = Server::start(&["--tokens", path.to_str().unwrap()]);
    let mut conn = s.connect();
    conn.send(post("/events", format!("[{}]", event("before", "/shop/a")), Some(&t.writer.bearer())));
    assert_eq!(conn.recv().status, 202);
    conn.send(post("/events", format!("[{}]", event("n0", "/n")), Some(&newcomer.bearer())));
    assert_eq!(conn.recv().status, 401, "not issued yet");

    write_tokens(&path, &[&t.reader, &newcomer]);
    s.signal("HUP");
    wait_for_log(&s, "tokens reloaded", 1);

    // The same keep-alive connection, the same header as before: now 401.
    conn.send(post("/events", format!("[{}]", event("after", "/shop/a")), Some(&t.writer.bearer())));
    let res = conn.recv();
    assert_eq!(res.status, 401);
    assert_eq!(header(&res, "connection"), None, "a 401 keeps the connection open");
    conn.send(post("/events", format!("[{}]", event("n1", "/n")), Some(&newcomer.bearer())));
    assert_eq!(conn.recv().status, 202, "a token added by the reload is accepted at once");
    let ids: Vec<String> = stored(&s, &t.reader).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["before", "n1"]);
}

#[test]
fn a_broken_tokens_file_at_reload_keeps_the_old_tokens() {
    let t = three_tokens();
    let (_dir, path) = tokens_file(&[&t.writer, &t.reader]);
    let s = Server::start(&["--tokens", path.to_str().unwrap()]);
    let mut conn = s.connect();
    for (i, broken) in
        ["[[token]]\nname = \"half", "", "[[token]]\nname = \"x\"\nscope = [\"write\"]\n"].into_iter().enumerate()
    {
        std::fs::write(&path, broken).unwrap();
        s.signal("HUP");
        wait_for_log(&s, "keeping the tokens in use", i + 1);
        conn.send(post("/events", format!("[{}]", event(&format!("e{i}"), "/shop/a")), Some(&t.writer.bearer())));
        assert_eq!(conn.recv().status, 202, "{broken:?}");
    }
    assert_eq!(stored(&s, &t.reader).len(), 3);
    assert!(s.stderr().contains("tokens.toml"), "the log line names the file:\n{}", s.stderr());
}

#[test]
fn over_quota_is_429_with_retry_after_while_another_token_is_served() {
    let slow = new_token("slow", "write").with("rate = 1\nburst = 5");
    let fast = new_token("fast", "write");
    let reader = new_token("reader", "read");
    let (_dir, path) = tokens_file(&[&slow, &fast, &reader]);
    let s = Server::start(&["--tokens", path.to_str().unwrap()]);
    let batch = |prefix: &str, n: usize| {
        format!("[{}]", (0..n).map(|i| event(&format!("{prefix}{i}"), "/q")).collect::<Vec<_>>().join(","))
    };
    assert_eq!(s.request(post("/events", batch("a", 5), Some(&slow.bearer()))).status, 202);
    let res = s.request(post("/events", batch("b", 1), Some(&slow.bearer())));
    assert_eq!(res.status, 429);
    assert_eq!(problem_type(&res), "urn:inlet:problem:quota-exceeded");
    let retry: u32 = header(&res, "retry-after").expect("Retry-After").parse().expect("integer seconds");
    assert!(retry >= 1, "{retry}");
    assert_eq!(header(&res, "ratelimit-policy"), Some("\"token\";q=1;w=1;inlet-burst=5"));
    assert_eq!(header(&res, "ratelimit"), Some(format!("\"token\";r=0;t={retry}").as_str()));
    // Another token is served normally meanwhile.
    for i in 0..20 {
        assert_eq!(s.request(post("/events", batch(&format!("f{i}-"), 10), Some(&fast.bearer()))).status, 202);
    }
    // More than the burst can never fit: 413.
    let res = s.request(post("/events", batch("c", 6), Some(&slow.bearer())));
    assert_eq!(res.status, 413);
    assert_eq!(problem_type(&res), "urn:inlet:problem:batch-over-burst");
    assert_eq!(header(&res, "retry-after"), None);

    let all = stored(&s, &reader);
    assert_eq!(
        all.iter().filter(|(_, t)| t.as_deref() == Some("slow")).count(),
        5,
        "the refused batches stored nothing"
    );
    assert_eq!(all.iter().filter(|(_, t)| t.as_deref() == Some("fast")).count(), 200);
}

/// Starts the server with `RUST_LOG=debug` (the harness removes it).
fn start_debug(args: &[&str]) -> Server {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(binary("inlet-server"));
    cmd.args(["--listen", "127.0.0.1:0", "--store", "memory", "--data-dir"]).arg(data_dir.path()).args(args);
    // `Server::spawn` removes RUST_LOG from the command; a wrapper shell
    // sets it again for the server itself.
    let mut shell = Command::new("sh");
    shell.arg("-c").arg("RUST_LOG=debug exec \"$0\" \"$@\"").arg(cmd.get_program()).args(cmd.get_args());
    Server::spawn(shell, data_dir)
}

#[test]
fn the_client_posts_20000_events_through_hundreds_of_429s_and_no_secret_is_logged() {
    // The quota, not the server's speed, must be the bottleneck: 16
    // connections with 8 batches of 50 in flight each (6,400 events) against
    // a burst of 2,000, so every round of `Retry-After` refuses most of
    // them, however fast the server is.
    let writer = new_token("bulk", "write").with("rate = 5000\nburst = 2000");
    let reader = new_token("reader", "read");
    let spare = new_token("spare", "write,read,metrics");
    let (_dir, path) = tokens_file(&[&writer, &reader, &spare]);
    let s = start_debug(&["--tokens", path.to_str().unwrap()]);

    let input: String = (0..20_000).map(|i| format!("{}\n", event(&format!("e{i}"), "/bulk"))).collect();
    let (code, stdout, stderr) = client(
        s.addr,
        &["post", "-", "--batch", "50", "--connections", "16", "--pipeline", "8", "--json", "--token", &writer.secret],
        Some(input.as_bytes()),
    );
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let stats = json(&s.request(get("/stats", Some(&reader.bearer()))));
    assert_eq!(stats["accepted"], 20_000, "{stats}");
    // A connection the client gives up on (slow answers under load) has its
    // requests resent elsewhere; the server may still accept them on the old
    // one, so `duplicates` can be above 0. What must hold: each event is
    // stored once (20,000 accepted, 20,000 distinct ids stored, below).
    let refused = stats["rejected"]["quota-exceeded"].as_u64().unwrap_or(0);
    assert!(refused >= 100, "the quota forced {refused} 429s: {stats}");
    eprintln!("{refused} answers 429");
    assert_eq!(stats["tokens"]["bulk"]["accepted"], 20_000);
    let ids: std::collections::HashSet<String> = {
        let mut ids = std::collections::HashSet::new();
        let mut after = 0u64;
        loop {
            let res = s.request(get(&format!("/events?limit=10000&after={after}"), Some(&reader.bearer())));
            let page = json(&res);
            for e in page["events"].as_array().unwrap() {
                assert_eq!(e["token"], "bulk");
                assert!(ids.insert(e["event"]["id"].as_str().unwrap().to_string()), "stored twice: {e}");
            }
            match page["next_after"].as_u64() {
                Some(n) => after = n,
                None => break,
            }
        }
        ids
    };
    assert_eq!(ids.len(), 20_000);

    // Every other path that handles a secret, with debug logs on: wrong
    // and malformed secrets, Basic, scope refusals, a reload and a broken one.
    let wrong = format!("Bearer {}", spare.secret.replace("inlet_", "inlet_x"));
    let basic = format!("Basic {}", base64(format!("{}:pw-{}", spare.secret, spare.secret).as_bytes()));
    for auth in [wrong.as_str(), &basic, "Bearer \u{1}", &format!("Basic {}", spare.secret)] {
        let _ = s.request(post("/events", format!("[{}]", event("z", "/z")), Some(auth)));
    }
    assert_eq!(s.request(get("/events", Some(&writer.bearer()))).status, 403);
    s.signal("HUP");
    wait_for_log(&s, "tokens reloaded", 1);
    std::fs::write(&path, format!("{}\nbroken", spare.entry)).unwrap();
    s.signal("HUP");
    wait_for_log(&s, "keeping the tokens in use", 1);

    let log = s.stderr();
    assert!(log.contains("DEBUG") && log.contains("refused:"), "refusals are logged at debug level:\n{log}");
    for token in [&writer, &reader, &spare] {
        let random = token.secret.trim_start_matches("inlet_");
        assert!(!log.contains(random), "a secret is in the log:\n{log}");
        let digest = token.entry.lines().find_map(|l| l.strip_prefix("sha256 = \"")).unwrap().trim_end_matches('"');
        assert!(!log.contains(digest), "a digest is in the log");
    }
    assert!(!log.contains(&basic["Basic ".len()..]), "Basic credentials are in the log");
}

#[test]
fn the_client_stops_at_401_and_403_with_their_exit_codes() {
    let reader = new_token("reader", "read");
    let (_dir, path) = tokens_file(&[&reader]);
    let s = Server::start(&["--tokens", path.to_str().unwrap()]);
    let input = format!("{}\n", event("1", "/c"));
    let (code, _, stderr) = client(s.addr, &["post", "-"], Some(input.as_bytes()));
    assert_eq!(code, 6, "{stderr}");
    let (code, _, stderr) = client(s.addr, &["post", "-", "--token", &reader.secret], Some(input.as_bytes()));
    assert_eq!(code, 7, "{stderr}");
    assert!(stderr.contains("does not have the \"write\" scope"), "{stderr}");
    let (code, stdout, stderr) = client(s.addr, &["stats", "--token", &reader.secret], None);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\"accepted\""), "{stdout}");
}

#[test]
fn blocking_mode_checks_tokens_too() {
    let t = three_tokens();
    let (_dir, path) = tokens_file(&[&t.writer, &t.reader]);
    let s = Server::start(&["--mode", "blocking", "--tokens", path.to_str().unwrap()]);
    let body = || format!("[{}]", event("b", "/shop/b"));
    assert_eq!(s.request(post("/events", body(), None)).status, 401);
    assert_eq!(s.request(post("/events", body(), Some(&t.reader.bearer()))).status, 403);
    assert_eq!(s.request(post("/events", body(), Some(&t.writer.bearer()))).status, 202);
    assert_eq!(stored(&s, &t.reader), [("b".to_string(), Some("writer".to_string()))]);
    // SIGHUP reloads here too (from the watcher thread), and does not end it.
    write_tokens(&path, &[&t.reader]);
    s.signal("HUP");
    wait_for_log(&s, "tokens reloaded", 1);
    assert_eq!(s.request(post("/events", body(), Some(&t.writer.bearer()))).status, 401);
}

#[test]
fn without_tokens_it_refuses_to_start_on_a_non_loopback_address() {
    let stderr = inlet_tests::refused_start(&["--listen", "0.0.0.0:0"]);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("inlet-server: refusing to serve anonymously on 0.0.0.0:0"), "{stderr}");
    assert!(stderr.contains("--tokens") && stderr.contains("--allow-anonymous"), "{stderr}");
}

#[test]
fn allow_anonymous_lets_it_start_on_any_address() {
    let s = Server::start(&["--listen", "0.0.0.0:0", "--allow-anonymous"]);
    let res = s.post("/events", "application/cloudevents-batch+json", format!("[{}]", event("a", "/x")));
    assert_eq!(res.status, 202);
    let page = json(&s.get("/events"));
    assert_eq!(page["events"][0]["token"], serde_json::Value::Null);
    assert_eq!(s.stats()["accepted"], 1);
}

#[test]
fn a_source_refusal_points_at_the_event_in_every_mode() {
    let writer = new_token("writer", "write").with(r#"sources = ["/shop/"]"#);
    let reader = new_token("reader", "read");
    let (_dir, path) = tokens_file(&[&writer, &reader]);
    let s = Server::start(&["--tokens", path.to_str().unwrap()]);
    let errors = |res: &ClientResponse| {
        assert_eq!(res.status, 403);
        json(res)["errors"].clone()
    };
    let send = |content_type: &'static str, body: String, extra: &[(&'static str, &str)]| {
        let mut req = ClientRequest::post("/events".to_string(), content_type, body)
            .header(Bytes::from_static(b"Authorization"), Bytes::from(writer.bearer()));
        for (name, value) in extra {
            req = req.header(Bytes::from_static(name.as_bytes()), Bytes::from(value.to_string()));
        }
        s.request(req)
    };
    let detail = "this token may write only sources starting with /shop/";
    // NDJSON: blank lines count, as in the parser's own errors.
    let ndjson = format!("{}\n\n{}\n{}\n", event("1", "/shop/a"), event("2", "/x"), event("3", "/y"));
    assert_eq!(
        errors(&send("application/x-ndjson", ndjson, &[])),
        serde_json::json!([
            {"pointer": "#/source", "line": 3, "detail": detail},
            {"pointer": "#/source", "line": 4, "detail": detail},
        ])
    );
    assert_eq!(
        errors(&send("application/cloudevents+json", event("1", "/x"), &[])),
        serde_json::json!([{"pointer": "#/source", "detail": detail}])
    );
    let binary = [("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "/x"), ("ce-type", "t")];
    assert_eq!(
        errors(&send("text/plain", "hi".into(), &binary)),
        serde_json::json!([{"header": "ce-source", "detail": detail}])
    );
    // Compressed bodies: the pointers and lines are those of the decoded body.
    let gzip = |content_type: &'static str, plain: String| {
        let coded = inlet_shared::http::coding::Coding::Gzip.encode(plain.as_bytes()).unwrap();
        let req = ClientRequest::post("/events".to_string(), content_type, coded)
            .header(Bytes::from_static(b"Authorization"), Bytes::from(writer.bearer()))
            .header(Bytes::from_static(b"Content-Encoding"), Bytes::from_static(b"gzip"));
        s.request(req)
    };
    let ndjson = format!("{}\n\n{}\n", event("4", "/shop/a"), event("5", "/x"));
    assert_eq!(
        errors(&gzip("application/x-ndjson", ndjson)),
        serde_json::json!([{"pointer": "#/source", "line": 3, "detail": detail}])
    );
    assert_eq!(
        errors(&gzip("application/json", event("6", "/x"))),
        serde_json::json!([{"pointer": "#/source", "detail": detail}])
    );
    assert_eq!(stored(&s, &reader), Vec::<(String, Option<String>)>::new());
}

/// `SIGHUP` ends a process by default: the handler is in place before
/// `listening on`, so a reload sent right after it reloads, in both modes.
#[test]
fn a_sighup_right_after_listening_on_reloads_and_does_not_end_the_server() {
    let reader = new_token("reader", "read");
    let (_dir, path) = tokens_file(&[&reader]);
    for mode in ["async", "blocking"] {
        let mut s = Server::start(&["--mode", mode, "--tokens", path.to_str().unwrap()]);
        s.signal("HUP");
        wait_for_log(&s, "tokens reloaded", 1);
        assert!(s.wait(Duration::from_millis(200)).is_none(), "{mode}: the server ended");
        assert_eq!(s.request(get("/stats", Some(&reader.bearer()))).status, 200, "{mode}");
    }
}
