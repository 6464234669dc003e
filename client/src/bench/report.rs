//! `bench`'s report: what the engine measured plus the run's shape, and its
//! two printers (text for people, JSON for scripts).

use std::collections::BTreeMap;
use std::fmt::Write;

use super::engine::Tally;
use crate::exit;

/// A finished run.
#[derive(Debug)]
pub struct Report {
    pub server: String,
    pub connections: u32,
    pub pipeline: u32,
    pub batch: u32,
    /// Open loop: the events/s asked for.
    pub rate: Option<f64>,
    pub elapsed_s: f64,
    pub tally: Tally,
    /// This process's CPU use as a share of the whole machine.
    pub client_cpu: Option<f64>,
    pub cores: f64,
}

impl Report {
    /// Requests finished: answered, or dropped in flight (the histogram's count).
    pub fn requests(&self) -> u64 {
        self.tally.status.values().sum::<u64>() + self.tally.dropped
    }

    fn mode(&self) -> &'static str {
        if self.rate.is_some() {
            "open loop"
        } else {
            "closed loop"
        }
    }

    /// The load generator itself was the limit.
    pub fn client_bound(&self) -> bool {
        self.client_cpu.is_some_and(|c| c > 0.85)
    }

    fn ms(&self, q: f64) -> f64 {
        self.tally.hist.value_at_quantile(q) as f64 / 1000.0
    }

    fn max_ms(&self) -> f64 {
        self.tally.hist.max() as f64 / 1000.0
    }

    /// The stop's code (`6` for `401`, `7` for `403`, `8` TLS) if the run
    /// stopped; `0` when every request was answered `2xx` (a `429`/`503`
    /// whose request was sent again counts as answered by that resend);
    /// `1` when some were refused (`4xx`); `5` for any other failure (`5xx`,
    /// dropped, connection errors).
    pub fn exit_code(&self) -> u8 {
        if let Some((code, _)) = &self.tally.stopped {
            return *code;
        }
        let ok: u64 = self.tally.status.iter().filter(|(s, _)| (200..300).contains(*s)).map(|(_, n)| n).sum();
        if self.tally.io_errors == 0 && ok + self.tally.retried == self.requests() {
            exit::OK
        } else if self.tally.status.keys().any(|s| (400..500).contains(s)) {
            exit::REJECTED
        } else {
            exit::SERVER_ERROR
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let t = &self.tally;
        let requests = self.requests();
        let status: BTreeMap<String, u64> = t.status.iter().map(|(s, n)| (s.to_string(), *n)).collect();
        serde_json::json!({
            "connections": self.connections,
            "pipeline": self.pipeline,
            "batch": self.batch,
            "mode": self.mode(),
            "rate": self.rate,
            "duration_s": self.elapsed_s,
            "requests": requests,
            "events": t.events,
            "requests_per_s": requests as f64 / self.elapsed_s,
            "events_per_s": t.events as f64 / self.elapsed_s,
            "latency_ms": {
                "count": t.hist.len(),
                "p50": self.ms(0.5),
                "p90": self.ms(0.9),
                "p99": self.ms(0.99),
                "p99_9": self.ms(0.999),
                "max": self.max_ms(),
            },
            "status": status,
            "dropped": t.dropped,
            "retried": t.retried,
            "stopped": t.stopped.as_ref().map(|(_, e)| e.as_str()),
            "io_errors": t.io_errors,
            "client_cpu": self.client_cpu,
            "client_bound": self.client_bound(),
        })
    }

    pub fn to_text(&self) -> String {
        let t = &self.tally;
        let requests = self.requests();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "inlet-client bench: {} connections, pipeline {}, batch {}, {}, {:.2} s against {}",
            self.connections,
            self.pipeline,
            self.batch,
            self.mode(),
            self.elapsed_s,
            self.server
        );
        let _ = writeln!(out, "requests: {requests} ({:.1}/s)", requests as f64 / self.elapsed_s);
        let _ = writeln!(out, "events:   {} ({:.1}/s)", t.events, t.events as f64 / self.elapsed_s);
        let _ = writeln!(
            out,
            "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.ms(0.999),
            self.max_ms()
        );
        let statuses: Vec<String> = t.status.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        let statuses = if statuses.is_empty() { "none".to_string() } else { statuses.join(", ") };
        let _ = writeln!(out, "status: {statuses}");
        if t.dropped > 0 {
            let _ = writeln!(out, "dropped in flight: {} (errors, measured up to the drop)", t.dropped);
        }
        if t.retried > 0 {
            let _ = writeln!(out, "sent again after 429/503: {}", t.retried);
        }
        let _ = writeln!(out, "connection errors: {}", t.io_errors);
        if let Some((_, error)) = &t.stopped {
            let _ = writeln!(out, "stopped: {error}");
        }
        if let Some(c) = self.client_cpu {
            let _ = writeln!(out, "client CPU: {:.0}% of {} cores", c * 100.0, self.cores);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let mut tally = Tally::new();
        for micros in [100, 200, 300, 400] {
            tally.hist.record(micros).unwrap();
        }
        tally.status.insert(202, 3);
        tally.dropped = 1;
        tally.io_errors = 1;
        tally.events = 3;
        Report {
            server: "127.0.0.1:8080".into(),
            connections: 2,
            pipeline: 1,
            batch: 1,
            rate: None,
            elapsed_s: 2.0,
            tally,
            client_cpu: Some(0.25),
            cores: 2.0,
        }
    }

    #[test]
    fn the_json_report_keeps_its_field_names() {
        let json = report().to_json();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "batch",
                "client_bound",
                "client_cpu",
                "connections",
                "dropped",
                "duration_s",
                "events",
                "events_per_s",
                "io_errors",
                "latency_ms",
                "mode",
                "pipeline",
                "rate",
                "requests",
                "requests_per_s",
                "retried",
                "status",
                "stopped"
            ]
        );
        assert_eq!(json["requests"], 4);
        assert_eq!(json["requests_per_s"], 2.0);
        assert_eq!(json["dropped"], 1);
        assert_eq!(json["status"], serde_json::json!({"202": 3}));
        assert_eq!(json["latency_ms"]["count"], 4);
        assert_eq!(json["latency_ms"]["max"], 0.4);
        assert_eq!(json["mode"], "closed loop");
        assert_eq!(json["client_bound"], false);
    }

    #[test]
    fn the_text_report() {
        let text = report().to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "inlet-client bench: 2 connections, pipeline 1, batch 1, closed loop, 2.00 s against 127.0.0.1:8080"
        );
        assert_eq!(lines[1], "requests: 4 (2.0/s)");
        assert_eq!(lines[2], "events:   3 (1.5/s)");
        assert!(lines[3].starts_with("latency ms: p50 0.200  p90 0.400"), "{}", lines[3]);
        assert_eq!(
            lines[4..],
            [
                "status: 202: 3",
                "dropped in flight: 1 (errors, measured up to the drop)",
                "connection errors: 1",
                "client CPU: 25% of 2 cores"
            ]
        );
    }

    #[test]
    fn exit_codes() {
        let mut r = report();
        assert_eq!(r.exit_code(), exit::SERVER_ERROR);
        r.tally.status.insert(422, 1);
        assert_eq!(r.exit_code(), exit::REJECTED);
        r.tally.status.remove(&422);
        r.tally.dropped = 0;
        r.tally.io_errors = 0;
        assert_eq!(r.exit_code(), exit::OK);
        // A 429 whose request went again and was accepted: still all OK.
        r.tally.status.insert(429, 2);
        r.tally.retried = 1;
        assert_eq!(r.exit_code(), exit::REJECTED);
        r.tally.retried = 2;
        assert_eq!(r.exit_code(), exit::OK);
        r.tally.stopped = Some((exit::UNAUTHORIZED, "HTTP 401: unknown token".into()));
        assert_eq!(r.exit_code(), exit::UNAUTHORIZED);
        assert_eq!(r.to_json()["stopped"], "HTTP 401: unknown token");
        assert!(r.to_text().contains("\nstopped: HTTP 401: unknown token\n"));
    }
}
