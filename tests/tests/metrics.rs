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
