//! The `Date` header (RFC 9110 §6.6.1), rendered at most once a second per
//! thread and copied into each response from a cache.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BytesMut;

/// `Sun, 06 Nov 1994 08:49:37 GMT` is always 29 bytes.
const DATE_LEN: usize = 29;

struct Cache {
    second: u64,
    text: [u8; DATE_LEN],
}

thread_local! {
    static CACHE: RefCell<Cache> = const { RefCell::new(Cache { second: u64::MAX, text: [0; DATE_LEN] }) };
}

/// Appends `Date: <IMF-fixdate>\r\n` to `dst`.
pub fn write_date(dst: &mut BytesMut) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    dst.extend_from_slice(b"Date: ");
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.second != second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == DATE_LEN {
                cache.text.copy_from_slice(text.as_bytes());
                cache.second = second;
            }
        }
        dst.extend_from_slice(&cache.text);
    });
    dst.extend_from_slice(b"\r\n");
}
