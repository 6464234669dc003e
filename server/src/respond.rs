//! Building responses: JSON bodies and RFC 9457 problems.

use bytes::Bytes;
use inlet_shared::http::{HttpError, Response};
use inlet_shared::problem::{Problem, PROBLEM_CONTENT_TYPE};

pub fn json(status: u16, body: impl Into<Bytes>) -> Response {
    Response::json(status, body)
}

/// A problem response. Callers count it through `App::reject`.
pub fn problem(problem: &Problem) -> Response {
    Response::new(
        problem.status,
        Some(Bytes::from_static(PROBLEM_CONTENT_TYPE.as_bytes())),
        Bytes::from(problem.to_json()),
    )
}

/// The problem answering a codec error.
pub fn http_error(e: HttpError) -> Problem {
    Problem::new(e.status(), e.reason(), e.to_string())
}
