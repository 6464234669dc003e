//! Request metrics for `/metrics`: counts by route, method and status, and
//! latency histograms by route. Every cell is a fixed atomic counter
//! (routes, methods and statuses are closed sets), so recording a request
//! takes no lock and allocates nothing; the registry reads them at scrape
//! time. The text is encoded by prometheus-client (OpenMetrics format).
//!
//! prometheus-client writes label values as they are. Some of ours come
//! from clients (the event `type` of `inlet_events_by_type`), so every label
//! value goes through [`LabelValue`], which escapes what the text format
//! requires: `\\`, `\"` and line feed as `\n`. Without it a type such as
//! `x"} 1\ninlet_injected_total 1337\n# EOF` adds lines to the exposition.
//! (Per-type counts stay labels: they are what an operator wants to graph,
//! and `/stats` caps the set of types at `MAX_TRACKED_TYPES`.)

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelValue, EncodeMetric, LabelValueEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::router::Route;
use crate::stats::Stats;

const ROUTES: [Route; Route::ALL.len()] = Route::ALL;
const METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER"];
/// Every status the server answers with (the one status table); any other is
/// counted as status "other".
const STATUSES: &[u16] = inlet_shared::http::status::CODES;
const OTHER_STATUS: usize = STATUSES.len();

/// Upper bounds of the latency buckets, seconds: 50 µs doubling to ~3.3 s.
fn bucket_bounds() -> [f64; 17] {
    let mut bounds = [0.0; 17];
    let mut b = 0.000_05;
    for slot in bounds.iter_mut() {
        *slot = b;
        b *= 2.0;
    }
    bounds
}

/// A label value written escaped as the OpenMetrics text format requires.
#[derive(Debug, Clone, Copy)]
pub struct LabelValue<'a>(pub &'a str);

impl EncodeLabelValue for LabelValue<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        use std::fmt::Write;
        let mut rest = self.0;
        while let Some(i) = rest.find(['\\', '"', '\n']) {
            encoder.write_str(&rest[..i])?;
            encoder.write_str(match rest.as_bytes()[i] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            })?;
            rest = &rest[i + 1..];
        }
        encoder.write_str(rest)
    }
}

/// `Route::ALL` lists the routes in their declaration order (a test checks
/// it), so a route's discriminant is its index.
fn route_index(route: Route) -> usize {
    route as usize
}

fn method_index(method: &str) -> usize {
    match method {
        "GET" => 0,
        "HEAD" => 1,
        "POST" => 2,
        "PUT" => 3,
        "DELETE" => 4,
        "PATCH" => 5,
        "OPTIONS" => 6,
        _ => METHODS.len() - 1,
    }
}

/// Status code to its index in `STATUSES` (`OTHER_STATUS` for any other),
/// built at compile time: one load per request instead of a search.
const STATUS_SLOTS: [u8; 600] = {
    assert!(STATUSES.len() < u8::MAX as usize);
    let mut slots = [OTHER_STATUS as u8; 600];
    let mut i = 0;
    while i < STATUSES.len() {
        slots[STATUSES[i] as usize] = i as u8;
        i += 1;
    }
    slots
};

fn status_index(status: u16) -> usize {
    STATUS_SLOTS.get(usize::from(status)).map_or(OTHER_STATUS, |&slot| usize::from(slot))
}

/// The latency bucket of `nanos`: the first `k` with
/// `nanos <= 50 µs * 2^k`, 17 (+Inf) past the last bound. In integers: `k`
/// is the bit length of `(nanos - 1) / 50 µs`.
fn bucket_index(nanos: u64) -> usize {
    let q = nanos.saturating_sub(1) / 50_000;
    ((u64::BITS - q.leading_zeros()) as usize).min(17)
}

#[derive(Debug)]
struct Latency {
    /// Per-bucket (not cumulative) counts; the last one is +Inf.
    /// The count is their sum, taken at scrape time.
    buckets: [AtomicU64; 18],
    sum_nanos: AtomicU64,
}

impl Latency {
    fn new() -> Latency {
        Latency { buckets: std::array::from_fn(|_| AtomicU64::new(0)), sum_nanos: AtomicU64::new(0) }
    }
}

#[derive(Debug)]
struct RequestMetrics {
    /// [route][method][status]
    counts: Vec<AtomicU64>,
    latency: Vec<Latency>,
    bounds: [f64; 17],
}

impl RequestMetrics {
    fn new() -> RequestMetrics {
        let cells = ROUTES.len() * METHODS.len() * (STATUSES.len() + 1);
        RequestMetrics {
            counts: (0..cells).map(|_| AtomicU64::new(0)).collect(),
            latency: ROUTES.iter().map(|_| Latency::new()).collect(),
            bounds: bucket_bounds(),
        }
    }

    fn cell(route: usize, method: usize, status: usize) -> usize {
        (route * METHODS.len() + method) * (STATUSES.len() + 1) + status
    }
}

/// Reads the shared [`RequestMetrics`] at scrape time.
#[derive(Debug)]
struct RequestCollector(Arc<RequestMetrics>);

impl Collector for RequestCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let this = &self.0;
        let mut metric = encoder.encode_descriptor(
            "inlet_http_requests",
            "HTTP requests answered, by route, method and status",
            None,
            MetricType::Counter,
        )?;
        for (r, route) in ROUTES.iter().enumerate() {
            for (m, method) in METHODS.iter().enumerate() {
                for s in 0..=STATUSES.len() {
                    let n = this.counts[RequestMetrics::cell(r, m, s)].load(Relaxed);
                    if n == 0 {
                        continue;
                    }
                    let status = STATUSES.get(s).map(u16::to_string).unwrap_or_else(|| "other".into());
                    let labels = [
                        ("route", LabelValue(route.name())),
                        ("method", LabelValue(method)),
                        ("status", LabelValue(&status)),
                    ];
                    ConstCounter::new(n).encode(metric.encode_family(&labels)?)?;
                }
            }
        }
        let mut metric = encoder.encode_descriptor(
            "inlet_http_request_duration_seconds",
            "Time from a complete request to its response, by route",
            None,
            MetricType::Histogram,
        )?;
        for (r, route) in ROUTES.iter().enumerate() {
            let l = &this.latency[r];
            let mut buckets: Vec<(f64, u64)> =
                this.bounds.iter().zip(&l.buckets).map(|(b, n)| (*b, n.load(Relaxed))).collect();
            buckets.push((f64::MAX, l.buckets[17].load(Relaxed)));
            let count = buckets.iter().map(|(_, n)| n).sum();
            if count == 0 {
                continue;
            }
            let sum = l.sum_nanos.load(Relaxed) as f64 / 1e9;
            let labels = [("route", LabelValue(route.name()))];
            metric.encode_family(&labels)?.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        Ok(())
    }
}

/// The `/metrics` registry: request metrics plus the [`Stats`] counters.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Arc<RequestMetrics>,
}

impl Metrics {
    pub fn new(stats: Arc<Stats>) -> Metrics {
        let requests = Arc::new(RequestMetrics::new());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(RequestCollector(requests.clone())));
        registry.register_collector(Box::new(crate::stats::collector(stats)));
        Metrics { registry, requests }
    }

    /// Records one answered request. Lock-free.
    pub fn observe(&self, route: Route, method: &str, status: u16, elapsed: Duration) {
        let r = &self.requests;
        let ri = route_index(route);
        r.counts[RequestMetrics::cell(ri, method_index(method), status_index(status))].fetch_add(1, Relaxed);
        let l = &r.latency[ri];
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        l.buckets[bucket_index(nanos)].fetch_add(1, Relaxed);
        l.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// The exposition text (OpenMetrics text format, which Prometheus reads).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(stats: Arc<Stats>, observe: impl FnOnce(&Metrics)) -> String {
        let metrics = Metrics::new(stats);
        observe(&metrics);
        metrics.render()
    }

    #[test]
    fn indices_match_the_label_tables() {
        for (i, route) in ROUTES.iter().enumerate() {
            assert_eq!(route_index(*route), i, "{route:?}");
        }
        for (i, method) in METHODS.iter().enumerate() {
            assert_eq!(method_index(method), i, "{method}");
        }
        assert_eq!(method_index("BREW"), METHODS.len() - 1);
        assert_eq!(method_index("get"), METHODS.len() - 1);
        for status in 0..=u16::MAX {
            let expected = STATUSES.iter().position(|s| *s == status).unwrap_or(OTHER_STATUS);
            assert_eq!(status_index(status), expected, "{status}");
        }
    }

    #[test]
    fn latency_buckets_hold_to_their_bounds_exactly() {
        // Bound k is 50 µs * 2^k: a latency on a bound is in that bucket,
        // one nanosecond more is in the next.
        assert_eq!(bucket_index(0), 0);
        for k in 0..17u32 {
            let bound = 50_000u64 << k;
            assert_eq!(bucket_index(bound), k as usize, "{bound}");
            assert_eq!(bucket_index(bound + 1), k as usize + 1, "{bound}");
            assert_eq!(bucket_index(bound - 1), if k == 0 { 0 } else { k as usize }, "{bound}");
        }
        assert_eq!(bucket_index(u64::MAX), 17);
        // The same buckets as the float bounds written in the exposition.
        let bounds = bucket_bounds();
        for nanos in
            [1, 49_999, 50_001, 70_000, 99_999, 100_001, 1_000_000, 3_276_800_000, 3_276_800_001, 10_000_000_000]
        {
            let secs = Duration::from_nanos(nanos).as_secs_f64();
            assert_eq!(bucket_index(nanos), bounds.iter().position(|b| secs <= *b).unwrap_or(17), "{nanos}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let stats = Arc::new(Stats::default());
        let hostile = "x\"} 1\ninlet_injected_total 1337\n# EOF";
        stats.record_accepted([hostile, "a\\b", hostile].into_iter(), 0);
        let text = rendered(stats, |_| {});
        assert!(
            text.contains("inlet_events_by_type_total{type=\"x\\\"} 1\\ninlet_injected_total 1337\\n# EOF\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("inlet_events_by_type_total{type=\"a\\\\b\"} 1\n"), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("inlet_injected")), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("# EOF")).count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn requests_are_counted_by_route_method_and_status() {
        let text = rendered(Arc::new(Stats::default()), |m| {
            m.observe(Route::Events, "POST", 202, Duration::from_micros(70));
            m.observe(Route::Events, "POST", 202, Duration::from_micros(70));
            m.observe(Route::Health, "BREW", 299, Duration::from_secs(10));
        });
        assert!(
            text.contains("inlet_http_requests_total{route=\"/events\",method=\"POST\",status=\"202\"} 2\n"),
            "{text}"
        );
        // An unknown method and status are counted as "OTHER" and "other".
        assert!(
            text.contains("inlet_http_requests_total{route=\"/health\",method=\"OTHER\",status=\"other\"} 1\n"),
            "{text}"
        );
        // 70 µs falls in the second bucket (50 µs, 100 µs]; buckets are cumulative.
        assert!(
            text.contains("inlet_http_request_duration_seconds_bucket{le=\"0.00005\",route=\"/events\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("inlet_http_request_duration_seconds_bucket{le=\"0.0001\",route=\"/events\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("inlet_http_request_duration_seconds_count{route=\"/events\"} 2\n"), "{text}");
        // 10 s is past the last bound: only +Inf holds it.
        assert!(
            text.contains("inlet_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/health\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("inlet_http_request_duration_seconds_bucket{le=\"3.2768\",route=\"/health\"} 0\n"),
            "{text}"
        );
        // Routes never requested have no series.
        assert!(!text.contains("route=\"/stats\""), "{text}");
    }
}
