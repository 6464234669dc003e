//! The `Date` header (RFC 9110 §6.6.1), rendered at most once a second per
//! thread and copied into each response from a cache.
//!
//! Each response reads the wall clock; the cache keeps the second it holds
//! as two `SystemTime`s, its start and the next one's, so that telling
//! whether the reading is still in it is two comparisons (working out the
//! reading's second, `duration_since(UNIX_EPOCH)`, is done only when it is
//! not). A reading before the start (the clock was set back) is not in it
//! either, so the `Date` follows the clock both ways.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;

/// `Sun, 06 Nov 1994 08:49:37 GMT` is always 29 bytes.
const DATE_LEN: usize = 29;

struct Cache {
    /// The start of the second `text` shows, and of the next one: a
    /// reading in `start..next` is dated with `text`. Both `UNIX_EPOCH`
    /// (an empty range): nothing cached.
    start: SystemTime,
    next: SystemTime,
    text: [u8; DATE_LEN],
}

thread_local! {
    static CACHE: RefCell<Cache> = const { RefCell::new(Cache::EMPTY) };
}

/// Appends `Date: <IMF-fixdate>\r\n` to `dst`.
pub fn write_date(dst: &mut BytesMut) {
    let now = SystemTime::now();
    dst.extend_from_slice(b"Date: ");
    CACHE.with(|cache| cache.borrow_mut().put(dst, now));
    dst.extend_from_slice(b"\r\n");
}

impl Cache {
    const EMPTY: Cache = Cache { start: UNIX_EPOCH, next: UNIX_EPOCH, text: [0; DATE_LEN] };

    /// Appends the date of the wall-clock reading `now`.
    #[inline]
    fn put(&mut self, dst: &mut BytesMut, now: SystemTime) {
        if !(self.start <= now && now < self.next) {
            self.refresh(now);
        }
        dst.extend_from_slice(&self.text);
    }

    /// Renders the second of `now` and keeps its bounds.
    #[cold]
    fn refresh(&mut self, now: SystemTime) {
        let text = httpdate::fmt_http_date(now);
        if text.len() != DATE_LEN {
            // A year past 9999: not cached; the last text is sent, as before.
            *self = Cache { text: self.text, ..Cache::EMPTY };
            return;
        }
        self.text.copy_from_slice(text.as_bytes());
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.start = UNIX_EPOCH + Duration::from_secs(second);
        // No next second representable: the range stays empty.
        self.next = self.start.checked_add(Duration::from_secs(1)).unwrap_or(self.start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    fn date(cache: &mut Cache, now: SystemTime) -> String {
        let mut dst = BytesMut::new();
        cache.put(&mut dst, now);
        String::from_utf8(dst.to_vec()).unwrap()
    }

    #[test]
    fn each_reading_is_dated_with_its_own_second() {
        let mut cache = Cache::EMPTY;
        // 784111777: Sun, 06 Nov 1994 08:49:37 GMT.
        assert_eq!(date(&mut cache, at(784_111_777, 250_000_000)), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!((cache.start, cache.next), (at(784_111_777, 0), at(784_111_778, 0)));
        assert_eq!(date(&mut cache, at(784_111_777, 0)), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(date(&mut cache, at(784_111_777, 999_999_999)), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(date(&mut cache, at(784_111_778, 0)), "Sun, 06 Nov 1994 08:49:38 GMT");
        assert_eq!(date(&mut cache, at(784_111_838, 1)), "Sun, 06 Nov 1994 08:50:38 GMT");
    }

    #[test]
    fn a_clock_set_back_is_followed() {
        let mut cache = Cache::EMPTY;
        assert_eq!(date(&mut cache, at(784_111_777, 500)), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(date(&mut cache, at(784_111_776, 999_999_999)), "Sun, 06 Nov 1994 08:49:36 GMT");
        assert_eq!(date(&mut cache, at(784_111_777, 0)), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn the_epoch_itself_is_dated() {
        // The empty cache's bounds are the epoch: its first second must
        // still be rendered, not taken from the empty text.
        let mut cache = Cache::EMPTY;
        assert_eq!(date(&mut cache, UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(date(&mut cache, at(0, 999)), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn write_date_dates_with_the_current_second() {
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let mut dst = BytesMut::new();
        write_date(&mut dst);
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let line = std::str::from_utf8(&dst).unwrap();
        let value = line.strip_prefix("Date: ").and_then(|v| v.strip_suffix("\r\n")).unwrap();
        let secs = httpdate::parse_http_date(value).unwrap().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!(before <= secs && secs <= after, "{before} <= {secs} <= {after}");
    }
}
