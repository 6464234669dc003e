//! `inlet-client` against the real server: many `post` processes at once,
//! rejections by line, retries as duplicates, the stage-1 proof with
//! `hold` + `probe`, and `bench --json` agreeing with `/stats`.

use std::process::{Command, Stdio};
use std::time::Duration;

use inlet_tests::{binary, client, Server};

fn ndjson(prefix: &str, count: usize) -> String {
    (0..count)
        .map(|i| format!(r#"{{"specversion":"1.0","id":"{prefix}-{i}","source":"/client-test","type":"t.client","data":{{"i":{i}}}}}"#))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn twenty_post_processes_at_once_store_every_event_once() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..20)
        .map(|p| {
            let path = dir.path().join(format!("events-{p}.ndjson"));
            std::fs::write(&path, ndjson(&format!("proc{p}"), 1000)).unwrap();
            Command::new(binary("inlet-client"))
                .args([
                    "post",
                    path.to_str().unwrap(),
                    "--server",
                    &s.addr.to_string(),
                    "--pipeline",
                    "8",
                    "--batch",
                    "10",
                    "--connections",
                    "2",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("accepted: 1000\n") && stdout.contains("rejected: 0\n"), "{stdout}");
    }
    let stats = s.stats();
    assert_eq!(stats["accepted"], 20_000);
    assert_eq!(stats["duplicates"], 0);
}

#[test]
fn rejected_lines_are_reported_by_number_with_exit_code_1() {
    let s = Server::start(&[]);
    let mut lines: Vec<String> = ndjson("mix", 10).lines().map(str::to_string).collect();
    lines[2] = r#"{"specversion":"1.0","id":"bad-type","source":"/s"}"#.to_string();
    lines[5] = "{not json".to_string();
    lines[6] = String::new();
    lines[8] = r#"{"specversion":"1.0","id":"bad-time","source":"/s","type":"t","time":"soon"}"#.to_string();
    let input = lines.join("\n");
    for batch in ["1", "4"] {
        let (code, stdout, _) = client(s.addr, &["post", "-", "--batch", batch], Some(input.as_bytes()));
        assert_eq!(code, 1, "{stdout}");
        assert!(stdout.contains("rejected: 3\n"), "{stdout}");
        assert!(stdout.contains("  line 3: #/type: is required and must be a non-empty string\n"), "{stdout}");
        assert!(stdout.contains("  line 6: not valid JSON"), "{stdout}");
        assert!(stdout.contains("  line 9: #/time: must be an RFC 3339 timestamp"), "{stdout}");
        assert!(stdout.contains("failed: 0\n"), "{stdout}");
    }
    // Six valid lines, stored once although the file went twice.
    let stats = s.stats();
    assert_eq!(stats["accepted"], 6);
    assert_eq!(stats["duplicates"], 6);
}

#[test]
fn posting_the_same_file_twice_reports_duplicates() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("same.ndjson");
    std::fs::write(&path, ndjson("twice", 500)).unwrap();
    let path = path.to_str().unwrap();
    let (code, first, _) = client(s.addr, &["post", path, "--connections", "4", "--json"], None);
    assert_eq!(code, 0);
    let first: serde_json::Value = serde_json::from_str(first.trim()).unwrap();
    assert_eq!((first["accepted"].as_u64(), first["duplicates"].as_u64()), (Some(500), Some(0)));
    let (code, second, _) = client(s.addr, &["post", path, "--batch", "50", "--json"], None);
    assert_eq!(code, 0);
    let second: serde_json::Value = serde_json::from_str(second.trim()).unwrap();
    assert_eq!((second["accepted"].as_u64(), second["duplicates"].as_u64()), (Some(0), Some(500)));
}

#[test]
fn unreachable_server_is_exit_code_3_with_nothing_lost_silently() {
    // A port nobody listens on: bind, note it, close.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (code, stdout, _) = client(addr, &["post", "-", "--retries", "1"], Some(ndjson("x", 3).as_bytes()));
    assert_eq!(code, 3, "{stdout}");
    assert!(stdout.contains("failed: 3\n"), "{stdout}");
    let (code, _, _) = client(addr, &["probe"], None);
    assert_eq!(code, 3);
}

fn hold(s: &Server) -> std::process::Child {
    Command::new(binary("inlet-client"))
        .args(["hold", "--connections", "1", "--duration", "30s", "--server", &s.addr.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_until_held(child: &mut std::process::Child) {
    use std::io::{BufRead, BufReader};
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert!(line.starts_with("holding idle 1 connection"), "{line}");
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn hold_and_probe_prove_the_blocking_freeze() {
    let blocking = Server::start(&["--mode", "blocking"]);
    let mut holder = hold(&blocking);
    wait_until_held(&mut holder);
    let (code, stdout, _) = client(blocking.addr, &["probe", "--timeout", "1s"], None);
    assert_eq!(code, 4, "probe must time out against the blocked server: {stdout}");
    assert!(stdout.contains("no answer within"), "{stdout}");
    let _ = holder.kill();
    let _ = holder.wait();

    let async_server = Server::start(&[]);
    let mut holder = hold(&async_server);
    wait_until_held(&mut holder);
    let (code, stdout, _) = client(async_server.addr, &["probe", "--timeout", "1s"], None);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.starts_with("200 in "), "{stdout}");
    let _ = holder.kill();
    let _ = holder.wait();
}

#[test]
fn bench_json_counts_match_server_stats() {
    let s = Server::start(&[]);
    let (code, stdout, stderr) = client(
        s.addr,
        &["bench", "--connections", "4", "--pipeline", "4", "--batch", "3", "--requests", "600", "--json"],
        None,
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["requests"], 600);
    assert_eq!(report["events"], 1800);
    assert_eq!(report["status"]["202"], 600);
    for q in ["p50", "p90", "p99", "p99_9", "max"] {
        assert!(report["latency_ms"][q].as_f64().is_some_and(|v| v > 0.0), "{q}");
    }
    let stats = s.stats();
    assert_eq!(stats["accepted"], 1800);
    assert_eq!(stats["duplicates"], 0);
}

#[test]
fn send_events_and_stats_subcommands() {
    let s = Server::start(&[]);
    let (code, stdout, _) =
        client(s.addr, &["send", "--type", "t.send", "--id", "fixed", "--data", r#"{"k":1}"#], None);
    assert_eq!(code, 0);
    assert_eq!(stdout, "202 {\"accepted\":1,\"duplicates\":0}\n");
    let (code, stdout, _) = client(s.addr, &["send", "--type", "t.send", "--data", "{oops"], None);
    assert_eq!((code, stdout.as_str()), (2, ""));
    let (code, stdout, _) = client(s.addr, &["events", "--type", "t.send"], None);
    assert_eq!(code, 0);
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(line["event"]["id"], "fixed");
    assert_eq!(line["event"]["data"], serde_json::json!({"k": 1}));
    let (code, stdout, _) = client(s.addr, &["stats"], None);
    assert_eq!(code, 0);
    let stats: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(stats["accepted"], 1);
}

#[test]
fn post_with_slow_input_sends_every_line_after_header_timeouts() {
    // Issue 11 §3 b: a worker that connected before it had input got the
    // server's 408 (header timeout) and paired it with the next chunk.
    use std::io::Write;
    let s = Server::start(&["--header-timeout", "300ms"]);
    let mut child = Command::new(binary("inlet-client"))
        .args(["post", "-", "--connections", "2", "--server", &s.addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Vec<String> = ndjson("slow", 4).lines().map(|l| format!("{l}\n")).collect();
    let mut stdin = child.stdin.take().unwrap();
    // Every pause is well past the header timeout.
    for part in [&lines[0..1], &lines[1..3], &lines[3..4]] {
        std::thread::sleep(Duration::from_millis(800));
        stdin.write_all(part.concat().as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("accepted: 4\n"), "{stdout}");
    assert!(stdout.contains("rejected: 0\n"), "{stdout}");
    assert!(stdout.contains("failed: 0\n"), "{stdout}");
    let stats = s.stats();
    assert_eq!(stats["accepted"], 4);
}

/// A stand-in server: answers the first `answered` requests of every
/// connection with `202`, reads the next one and closes without answering.
fn dropping_server(answered: usize) -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                for served in 0.. {
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap();
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    if served == answered {
                        return;
                    }
                    let answer = "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 29\r\n\r\n{\"accepted\":1,\"duplicates\":0}";
                    writer.write_all(answer.as_bytes()).unwrap();
                }
            });
        }
    });
    addr
}

#[test]
fn bench_counts_requests_dropped_in_flight_as_errors_with_their_latency() {
    // Issue 11 §3 g: the requests in flight when a connection dropped
    // vanished from the report.
    let addr = dropping_server(2);
    let (code, stdout, stderr) =
        client(addr, &["bench", "--connections", "1", "--pipeline", "1", "--requests", "9", "--json"], None);
    assert_eq!(code, 5, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["status"]["202"], 6, "{report}");
    assert_eq!(report["dropped"], 3, "{report}");
    assert_eq!(report["requests"], 9, "{report}");
    assert_eq!(report["latency_ms"]["count"], 9, "{report}");
}
