//! Waiting when the server asks to: `Retry-After` on `429` and `503`, with
//! jitter so that many senders told the same number do not come back in
//! the same instant. Shared by `post` and `bench`.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use inlet_shared::http::ClientResponse;

/// The wait before a retry when the server did not say.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_millis(500);
/// The longest `Retry-After` honoured: a server asking for more gets this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Jitter adds up to this share of the wait (0.2: up to +20%).
pub const JITTER: f64 = 0.2;

/// `Retry-After` in seconds (RFC 9110 §10.2.3), capped at
/// [`MAX_RETRY_AFTER`]; `None` when absent or an HTTP-date.
pub fn retry_after(res: &ClientResponse) -> Option<Duration> {
    let seconds: u64 = res.headers.get_str("retry-after")?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// `after` plus `unit` (in `[0, 1)`) times [`JITTER`] of it: never shorter
/// than the server asked.
pub fn jittered(after: Duration, unit: f64) -> Duration {
    after + after.mul_f64(unit.clamp(0.0, 1.0) * JITTER)
}

/// A small per-task source of jitter (xorshift64*), seeded from the
/// process's random hash keys: not cryptographic, only spread out.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new() -> Jitter {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x9E37_79B9_7F4A_7C15);
        Jitter(h.finish() | 1)
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `after` with jitter.
    pub fn apply(&mut self, after: Duration) -> Duration {
        jittered(after, self.unit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use inlet_shared::http::{Headers, Version};

    fn response(headers: &[(&str, &str)]) -> ClientResponse {
        ClientResponse {
            status: 429,
            version: Version::Http11,
            headers: Headers::from_pairs(headers),
            body: Bytes::new(),
        }
    }

    #[test]
    fn retry_after_is_integer_seconds_capped() {
        assert_eq!(retry_after(&response(&[("Retry-After", "1")])), Some(Duration::from_secs(1)));
        assert_eq!(retry_after(&response(&[("Retry-After", " 7 ")])), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&response(&[("Retry-After", "86400")])), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(&response(&[("Retry-After", "Wed, 21 Oct 2026 07:28:00 GMT")])), None);
        assert_eq!(retry_after(&response(&[("Retry-After", "-1")])), None);
        assert_eq!(retry_after(&response(&[])), None);
    }

    #[test]
    fn jitter_adds_up_to_a_fifth_never_less() {
        let s = Duration::from_secs(1);
        assert_eq!(jittered(s, 0.0), s);
        assert_eq!(jittered(s, 0.5), Duration::from_millis(1100));
        assert_eq!(jittered(s, 1.0), Duration::from_millis(1200));
        assert_eq!(jittered(s, 7.0), Duration::from_millis(1200));
        let mut j = Jitter::new();
        let units: Vec<f64> = (0..1000).map(|_| j.unit()).collect();
        assert!(units.iter().all(|u| (0.0..1.0).contains(u)));
        // Spread out: both halves of the range are used.
        assert!(units.iter().any(|u| *u < 0.5) && units.iter().any(|u| *u >= 0.5));
    }
}
