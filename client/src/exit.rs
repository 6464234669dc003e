//! Exit codes scripts can rely on.

/// Everything was accepted (or answered, for read-only commands).
pub const OK: u8 = 0;
/// The server refused some input (4xx): invalid events, bad JSON, too large.
pub const REJECTED: u8 = 1;
/// Bad command line (clap's own code).
pub const USAGE: u8 = 2;
/// The server could not be reached, or events were not acknowledged after
/// every retry.
pub const UNREACHABLE: u8 = 3;
/// No answer within the time limit.
pub const TIMEOUT: u8 = 4;
/// The server answered with an error of its own (5xx) or something unexpected.
pub const SERVER_ERROR: u8 = 5;

/// The exit code for a final HTTP status.
pub fn for_status(status: u16) -> u8 {
    match status {
        200..=299 => OK,
        400..=499 => REJECTED,
        _ => SERVER_ERROR,
    }
}
