//! Exit codes scripts can rely on.

/// Everything was accepted (or answered, for read-only commands).
pub const OK: u8 = 0;
/// The server refused some input (4xx): invalid events, bad JSON, too large.
pub const REJECTED: u8 = 1;
/// Bad command line (clap's own code), or a file it names cannot be read.
pub const USAGE: u8 = 2;
/// The server could not be reached, or events were not acknowledged after
/// every retry.
pub const UNREACHABLE: u8 = 3;
/// No answer within the time limit.
pub const TIMEOUT: u8 = 4;
/// The server answered with an error of its own (5xx) or something unexpected.
pub const SERVER_ERROR: u8 = 5;
/// `401`: no token, or one the server does not know.
pub const UNAUTHORIZED: u8 = 6;
/// `403`: the token may not do this (scope, or an event's `source`).
pub const FORBIDDEN: u8 = 7;
/// No trusted TLS connection: the handshake failed (certificate not
/// trusted, client certificate refused), or no trust store to check with.
pub const TLS: u8 = 8;

/// The exit code for a final HTTP status.
pub fn for_status(status: u16) -> u8 {
    match status {
        200..=299 => OK,
        401 => UNAUTHORIZED,
        403 => FORBIDDEN,
        400..=499 => REJECTED,
        _ => SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_codes() {
        let codes: Vec<u8> = [200, 202, 400, 401, 403, 404, 413, 429, 500, 503].map(for_status).to_vec();
        assert_eq!(
            codes,
            [OK, OK, REJECTED, UNAUTHORIZED, FORBIDDEN, REJECTED, REJECTED, REJECTED, SERVER_ERROR, SERVER_ERROR]
        );
    }
}
