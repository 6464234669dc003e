//! `/metrics` (issue 11 §2.2): client-chosen strings used as label values
//! (the event `type`) are escaped as the OpenMetrics text format requires,
//! so they can neither add lines nor end the exposition.

use inlet_tests::Server;

/// One sample line: metric name, labels (values unescaped), value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: String,
}

/// Parses the exposition text; panics on a line the format does not allow.
fn parse(text: &str) -> Vec<Sample> {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "the exposition ends with # EOF");
    let mut samples = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        if line.starts_with('#') {
            assert!(n == lines.len() - 1 || !line.starts_with("# EOF"), "# EOF before the end: {line}");
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line}"));
        let name = line[..name_end].to_string();
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices();
            let mut key = String::new();
            loop {
                let (_, c) = chars.next().unwrap_or_else(|| panic!("unterminated labels: {line}"));
                match c {
                    '}' => break,
                    ',' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                        let mut value = String::new();
                        loop {
                            match chars.next().map(|(_, c)| c) {
                                Some('"') => break,
                                Some('\\') => match chars.next().map(|(_, c)| c) {
                                    Some('\\') => value.push('\\'),
                                    Some('"') => value.push('"'),
                                    Some('n') => value.push('\n'),
                                    other => panic!("invalid escape {other:?} in {line}"),
                                },
                                Some(c) => value.push(c),
                                None => panic!("unterminated label value: {line}"),
                            }
                        }
                        labels.push((std::mem::take(&mut key), value));
                    }
                    c => key.push(c),
                }
            }
            let consumed = chars.next().map(|(i, _)| i).unwrap_or(inner.len());
            rest = &inner[consumed..];
        }
        let value = rest.trim().to_string();
        assert!(!value.is_empty() && !value.contains(' '), "one value per line: {line}");
        samples.push(Sample { name, labels, value });
    }
    samples
}

fn event(ty: &str) -> String {
    serde_json::json!({"specversion": "1.0", "id": ty, "source": "/metrics-test", "type": ty}).to_string()
}

/// The count `inlet_events_by_type_total` shows for `ty`.
fn count_of(samples: &[Sample], ty: &str) -> Option<String> {
    samples
        .iter()
        .find(|s| s.name == "inlet_events_by_type_total" && s.labels == [("type".to_string(), ty.to_string())])
        .map(|s| s.value.clone())
}

#[test]
fn an_event_type_cannot_inject_lines_into_metrics() {
    let s = Server::start(&[]);
    let hostile = "x\"} 1\ninlet_injected_total 1337\n# EOF";
    // Quote and backslash are valid in a type and must round-trip.
    let quoted = r#"q"uote\back\slash"#;
    let res = s.post("/events", "application/json", event(hostile));
    // Control characters in a type are refused by validation (issue 11
    // §2.3, 422); where they are not, the label must be escaped.
    let hostile_accepted = match res.status {
        202 => true,
        422 => false,
        other => panic!("unexpected {other}"),
    };
    assert_eq!(s.post("/events", "application/json", event(quoted)).status, 202);
    let res = s.get("/metrics");
    assert_eq!(res.status, 200);
    let text = String::from_utf8(res.body.to_vec()).unwrap();
    let samples = parse(&text);
    assert!(!samples.iter().any(|s| s.name.starts_with("inlet_injected")), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("inlet_injected")), "{text}");
    assert_eq!(count_of(&samples, quoted).as_deref(), Some("1"), "{text}");
    assert!(text.contains(r#"inlet_events_by_type_total{type="q\"uote\\back\\slash"} 1"#), "{text}");
    if hostile_accepted {
        assert_eq!(count_of(&samples, hostile).as_deref(), Some("1"), "{text}");
        assert!(text.contains(r#"{type="x\"} 1\ninlet_injected_total 1337\n# EOF"} 1"#), "{text}");
    }
}

/// The value of the sample `name` with exactly `labels`.
fn value_of(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<String> {
    samples
        .iter()
        .find(|s| s.name == name && s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).eq(labels.iter().copied()))
        .map(|s| s.value.clone())
}

#[test]
fn the_sqlite_writer_counts_its_commits_in_stats_and_metrics() {
    let s = Server::start(&["--store", "sqlite", "--sync", "full"]);
    // One request at a time: each commit holds exactly one.
    for i in 0..5 {
        assert_eq!(s.post("/events", "application/json", event(&format!("t.commit{i}"))).status, 202);
    }
    let batch: Vec<String> = (0..3).map(|i| event(&format!("t.batch{i}"))).collect();
    assert_eq!(s.post("/events", "application/x-ndjson", batch.join("\n")).status, 202);
    let commits = &s.stats()["store"]["commits"];
    assert_eq!(commits["count"], 6, "{commits}");
    assert_eq!(commits["requests"], 6, "{commits}");
    assert_eq!(commits["events"], 8, "{commits}");
    assert!(commits["commit_seconds"].as_f64().is_some_and(|t| t > 0.0), "{commits}");
    let res = s.get("/metrics");
    let text = String::from_utf8(res.body.to_vec()).unwrap();
    let samples = parse(&text);
    let requests = "inlet_store_commit_requests";
    assert_eq!(value_of(&samples, &format!("{requests}_count"), &[]).as_deref(), Some("6"), "{text}");
    assert_eq!(value_of(&samples, &format!("{requests}_sum"), &[]).as_deref(), Some("6.0"), "{text}");
    assert_eq!(value_of(&samples, &format!("{requests}_bucket"), &[("le", "1.0")]).as_deref(), Some("6"), "{text}");
    let duration = "inlet_store_commit_duration_seconds";
    assert_eq!(value_of(&samples, &format!("{duration}_count"), &[]).as_deref(), Some("6"), "{text}");
    assert_eq!(value_of(&samples, &format!("{duration}_bucket"), &[("le", "+Inf")]).as_deref(), Some("6"), "{text}");
    assert_eq!(value_of(&samples, "inlet_store_commit_events_total", &[]).as_deref(), Some("8"), "{text}");

    // The memory store has no commits: neither figure appears.
    let m = Server::start(&["--store", "memory"]);
    assert_eq!(m.post("/events", "application/json", event("t.m")).status, 202);
    assert!(m.stats()["store"].get("commits").is_none(), "{}", m.stats());
    let text = String::from_utf8(m.get("/metrics").body.to_vec()).unwrap();
    assert!(!text.contains("inlet_store_commit"), "{text}");
}
