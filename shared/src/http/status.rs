//! The one table of status codes inlet sends and their reason phrases
//! (RFC 9110 §15). The encoder takes its pre-built status lines from it,
//! problem bodies their `title`, metrics their label set.

/// Declares the table once and derives from it the phrase lookup, the
/// pre-built status lines and the list of codes.
macro_rules! statuses {
    ($($code:literal => $phrase:literal,)*) => {
        /// Every status code inlet sends, in ascending order.
        pub const CODES: &[u16] = &[$($code),*];

        /// The reason phrase of `code` (RFC 9110 §15), if it is in the table.
        pub fn reason_phrase(code: u16) -> Option<&'static str> {
            match code {
                $($code => Some($phrase),)*
                _ => None,
            }
        }

        /// `HTTP/1.1 <code> <phrase>\r\n`, pre-built, if `code` is in the table.
        pub(crate) fn status_line(code: u16) -> Option<&'static [u8]> {
            match code {
                $($code => Some(concat!("HTTP/1.1 ", $code, " ", $phrase, "\r\n").as_bytes()),)*
                _ => None,
            }
        }
    };
}

statuses! {
    100 => "Continue",
    200 => "OK",
    202 => "Accepted",
    204 => "No Content",
    400 => "Bad Request",
    401 => "Unauthorized",
    403 => "Forbidden",
    404 => "Not Found",
    405 => "Method Not Allowed",
    408 => "Request Timeout",
    411 => "Length Required",
    413 => "Content Too Large",
    414 => "URI Too Long",
    415 => "Unsupported Media Type",
    422 => "Unprocessable Content",
    429 => "Too Many Requests",
    431 => "Request Header Fields Too Large",
    500 => "Internal Server Error",
    501 => "Not Implemented",
    503 => "Service Unavailable",
    505 => "HTTP Version Not Supported",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_ascending_and_each_has_a_line_and_a_phrase() {
        assert!(CODES.windows(2).all(|w| w[0] < w[1]));
        for &code in CODES {
            let phrase = reason_phrase(code).unwrap_or_default();
            assert!(!phrase.is_empty(), "{code}");
            assert_eq!(status_line(code), Some(format!("HTTP/1.1 {code} {phrase}\r\n").as_bytes()));
        }
        assert_eq!(reason_phrase(299), None);
        assert_eq!(status_line(299), None);
    }
}
