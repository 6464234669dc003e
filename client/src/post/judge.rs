//! What a response to a `post` request means for its lines: a pure
//! function of the status, the `Retry-After` header and the body, so every
//! case is a unit test. The worker applies the verdict.
//!
//! | status | verdict |
//! |---|---|
//! | `2xx` | stored: every line acknowledged, counts from the body |
//! | `401`, `403` | stop: every worker stops at once, nothing more is sent (the token is wrong or may not do this; retrying cannot help) |
//! | `408` | retry at once on a new connection: the request timed out, nothing was refused |
//! | `413`, more than one line | split in halves and send both |
//! | `4xx` with `errors[].line` | those lines refused; the others sent again |
//! | other `4xx` (one-line `413` too) | every line refused with the problem's `detail` |
//! | `429`, `503` with `Retry-After` | paced retry after `Retry-After` (seconds, at most [`crate::retry::MAX_RETRY_AFTER`]; the worker adds jitter): the server said when, so it does not use up `--retries` |
//! | `429`, `503` without it | retry after [`DEFAULT_RETRY_AFTER`] |
//! | anything else (`5xx`, `1xx`, `3xx`) | retry after [`DEFAULT_RETRY_AFTER`] |
//!
//! inlet stores a request all or nothing, so there is no partial success:
//! a `2xx` (a `207` too) acknowledges every line sent.

use std::collections::BTreeMap;
use std::time::Duration;

use inlet_shared::http::ClientResponse;
use inlet_shared::problem::{FieldError, Problem};

use crate::retry::{retry_after, DEFAULT_RETRY_AFTER};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every line is stored.
    Stored { accepted: u64, duplicates: u64 },
    /// Every line is refused, for this reason.
    Refused { reason: String },
    /// These lines (index into the chunk) are refused; the others are to be
    /// sent again (the server stored none of the request).
    RefusedLines { reasons: BTreeMap<usize, String> },
    /// Too large: send each half on its own.
    Split,
    /// Not answered about the lines: send again after `after`. `paced`: the
    /// server said when (`Retry-After` on `429`/`503`), so the retry is not
    /// one of `--retries`.
    Retry { after: Duration, error: String, paced: bool },
    /// The token is refused (`401`) or may not do this (`403`): stop all.
    Stop { status: u16, error: String },
}

/// The body of a `2xx`.
#[derive(Debug, serde::Deserialize)]
struct Ack {
    accepted: u64,
    duplicates: u64,
}

/// Judges the response to a request of `lines` lines.
pub fn judge(res: &ClientResponse, lines: usize) -> Verdict {
    let status = res.status;
    if (200..300).contains(&status) {
        return match serde_json::from_slice::<Ack>(&res.body) {
            Ok(ack) => Verdict::Stored { accepted: ack.accepted, duplicates: ack.duplicates },
            // The status says stored; count the lines sent.
            Err(_) => Verdict::Stored { accepted: lines as u64, duplicates: 0 },
        };
    }
    let problem = serde_json::from_slice::<Problem>(&res.body).ok();
    let detail = problem.as_ref().map(|p| p.detail.as_str()).filter(|d| !d.is_empty());
    let error = match detail {
        Some(detail) => format!("HTTP {status}: {detail}"),
        None => format!("HTTP {status}"),
    };
    match status {
        401 | 403 => Verdict::Stop { status, error },
        408 => Verdict::Retry { after: Duration::ZERO, error, paced: false },
        429 | 503 => match retry_after(res) {
            Some(after) => Verdict::Retry { after, error, paced: true },
            None => Verdict::Retry { after: DEFAULT_RETRY_AFTER, error, paced: false },
        },
        413 if lines > 1 => Verdict::Split,
        400..=499 => {
            let reasons = by_line(problem.as_ref().map_or(&[][..], |p| &p.errors), lines);
            if reasons.is_empty() {
                Verdict::Refused { reason: detail.map_or(error, str::to_string) }
            } else {
                Verdict::RefusedLines { reasons }
            }
        }
        _ => Verdict::Retry { after: DEFAULT_RETRY_AFTER, error, paced: false },
    }
}

/// The reasons by chunk index: body line `k` is `chunk.lines[k - 1]`
/// (blank lines were never sent). Lines outside the request are ignored.
fn by_line(errors: &[FieldError], lines: usize) -> BTreeMap<usize, String> {
    let mut reasons: BTreeMap<usize, String> = BTreeMap::new();
    for e in errors {
        let Some(index) = e.line.and_then(|l| usize::try_from(l).ok()).and_then(|l| l.checked_sub(1)) else {
            continue;
        };
        if index >= lines {
            continue;
        }
        let reason = match e.pointer.as_deref().or(e.header.as_deref()) {
            Some(at) => format!("{at}: {}", e.detail),
            None => e.detail.clone(),
        };
        reasons.entry(index).and_modify(|r| *r = format!("{r}; {reason}")).or_insert(reason);
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::MAX_RETRY_AFTER;
    use bytes::Bytes;
    use inlet_shared::http::{Headers, Version};

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> ClientResponse {
        ClientResponse {
            status,
            version: Version::Http11,
            headers: Headers::from_pairs(headers),
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    fn problem(status: u16, detail: &str, errors: Vec<FieldError>) -> String {
        String::from_utf8(Problem::new(status, "reason", detail).with_errors(errors).to_json()).unwrap()
    }

    #[test]
    fn accepted_counts_come_from_the_body() {
        let res = response(202, &[], r#"{"accepted":3,"duplicates":2}"#);
        assert_eq!(judge(&res, 5), Verdict::Stored { accepted: 3, duplicates: 2 });
    }

    #[test]
    fn any_2xx_acknowledges_every_line_even_without_a_body() {
        assert_eq!(judge(&response(200, &[], ""), 4), Verdict::Stored { accepted: 4, duplicates: 0 });
        // inlet has no partial success: a 207 is an acknowledgement too.
        let res = response(207, &[], r#"{"accepted":1,"duplicates":1}"#);
        assert_eq!(judge(&res, 2), Verdict::Stored { accepted: 1, duplicates: 1 });
    }

    #[test]
    fn a_408_is_retried_at_once_not_refused() {
        let res =
            response(408, &[("Connection", "close")], &problem(408, "the request did not arrive in time", vec![]));
        assert_eq!(
            judge(&res, 3),
            Verdict::Retry {
                after: Duration::ZERO,
                error: "HTTP 408: the request did not arrive in time".into(),
                paced: false
            }
        );
    }

    #[test]
    fn a_400_without_lines_refuses_the_whole_request_with_its_detail() {
        let res = response(400, &[], &problem(400, "bad chunk encoding", vec![]));
        assert_eq!(judge(&res, 2), Verdict::Refused { reason: "bad chunk encoding".into() });
    }

    #[test]
    fn a_4xx_that_is_not_a_problem_is_refused_by_status() {
        assert_eq!(judge(&response(404, &[], "<html>no</html>"), 1), Verdict::Refused { reason: "HTTP 404".into() });
    }

    /// Issue 13 §6: a refused or unfit token stops everything, whatever
    /// the body says and however many lines.
    #[test]
    fn a_401_or_403_stops_with_the_detail() {
        let res = response(
            401,
            &[("WWW-Authenticate", "Bearer realm=\"inlet\"")],
            &problem(401, "missing or unknown token", vec![]),
        );
        assert_eq!(judge(&res, 3), Verdict::Stop { status: 401, error: "HTTP 401: missing or unknown token".into() });
        let errors = vec![FieldError::pointer("#/source".into(), Some(1), "outside the token's sources")];
        let res = response(403, &[], &problem(403, "source not allowed for this token", errors));
        assert_eq!(
            judge(&res, 2),
            Verdict::Stop { status: 403, error: "HTTP 403: source not allowed for this token".into() }
        );
        assert_eq!(
            judge(&response(403, &[], "<html>no</html>"), 1),
            Verdict::Stop { status: 403, error: "HTTP 403".into() }
        );
    }

    #[test]
    fn a_413_splits_a_batch_and_refuses_a_single_line() {
        let body = problem(413, "event over --max-event-bytes", vec![]);
        assert_eq!(judge(&response(413, &[], &body), 2), Verdict::Split);
        assert_eq!(
            judge(&response(413, &[], &body), 1),
            Verdict::Refused { reason: "event over --max-event-bytes".into() }
        );
    }

    #[test]
    fn a_422_refuses_the_lines_it_names_with_every_reason() {
        let errors = vec![
            FieldError::pointer("#/type".into(), Some(1), "is required"),
            FieldError::pointer("#/time".into(), Some(3), "must be an RFC 3339 timestamp"),
            FieldError::pointer("#/id".into(), Some(3), "must be a non-empty string"),
            FieldError { pointer: None, header: None, line: Some(2), keyword: None, detail: "not valid JSON".into() },
            // Outside the request: ignored.
            FieldError::pointer("#/id".into(), Some(9), "?"),
            FieldError::pointer("#/id".into(), Some(0), "?"),
            FieldError::header("ce-id".into(), "no line"),
        ];
        let res = response(422, &[], &problem(422, "1 of 4 events is invalid", errors));
        let reasons = BTreeMap::from([
            (0, "#/type: is required".to_string()),
            (1, "not valid JSON".to_string()),
            (2, "#/time: must be an RFC 3339 timestamp; #/id: must be a non-empty string".to_string()),
        ]);
        assert_eq!(judge(&res, 4), Verdict::RefusedLines { reasons });
    }

    #[test]
    fn a_422_naming_no_line_of_the_request_refuses_all_of_it() {
        let errors = vec![FieldError::header("ce-type".into(), "is required")];
        let res = response(422, &[], &problem(422, "invalid event", errors));
        assert_eq!(judge(&res, 2), Verdict::Refused { reason: "invalid event".into() });
    }

    #[test]
    fn a_503_or_429_waits_for_retry_after_capped() {
        let res = response(503, &[("Retry-After", "2")], &problem(503, "store busy", vec![]));
        assert_eq!(
            judge(&res, 1),
            Verdict::Retry { after: Duration::from_secs(2), error: "HTTP 503: store busy".into(), paced: true }
        );
        let res = response(429, &[("Retry-After", "1")], &problem(429, "over quota", vec![]));
        assert_eq!(
            judge(&res, 100),
            Verdict::Retry { after: Duration::from_secs(1), error: "HTTP 429: over quota".into(), paced: true }
        );
        let res = response(429, &[("Retry-After", "86400")], &problem(429, "over quota", vec![]));
        assert_eq!(
            judge(&res, 1),
            Verdict::Retry { after: MAX_RETRY_AFTER, error: "HTTP 429: over quota".into(), paced: true }
        );
        // An HTTP-date, or nothing: the default wait, and an attempt used.
        let res = response(503, &[("Retry-After", "Wed, 21 Oct 2026 07:28:00 GMT")], "");
        assert_eq!(
            judge(&res, 1),
            Verdict::Retry { after: DEFAULT_RETRY_AFTER, error: "HTTP 503".into(), paced: false }
        );
        let res = response(429, &[], "");
        assert_eq!(
            judge(&res, 1),
            Verdict::Retry { after: DEFAULT_RETRY_AFTER, error: "HTTP 429".into(), paced: false }
        );
    }

    #[test]
    fn a_5xx_is_retried_after_the_default_wait() {
        let res = response(500, &[], &problem(500, "store failed", vec![]));
        assert_eq!(
            judge(&res, 1),
            Verdict::Retry { after: DEFAULT_RETRY_AFTER, error: "HTTP 500: store failed".into(), paced: false }
        );
        let res = response(502, &[], "bad gateway");
        assert_eq!(
            judge(&res, 1),
            Verdict::Retry { after: DEFAULT_RETRY_AFTER, error: "HTTP 502".into(), paced: false }
        );
    }
}
