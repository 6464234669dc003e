//! [`HarnessError`]: why a harness step failed, for the `try_` methods.
//! The panicking methods (`Server::start`, `Conn::recv`, ...) call their
//! `try_` twin and panic with this error's text.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use inlet_shared::http::CodecError;

/// One failed harness step. I/O and codec failures keep their cause
/// ([`std::error::Error::source`]).
#[derive(Debug)]
pub enum HarnessError {
    /// A workspace binary is not built.
    MissingBinary(PathBuf),
    /// A process could not be spawned.
    Spawn { program: PathBuf, source: io::Error },
    /// The process exited before it was ready; `log` is what it wrote.
    Exited { status: Option<ExitStatus>, log: String },
    /// The process did not get ready within `within`; `log` is what it wrote.
    NotReady { within: Duration, log: String },
    /// The server's first line was not `listening on <addr>`.
    UnexpectedFirstLine(String),
    /// The connection was refused (or could not be made).
    Connect(io::Error),
    /// Writing to the connection failed (the peer closed or reset it).
    Write(io::Error),
    /// Reading failed with something other than a timeout (a reset).
    Read(io::Error),
    /// The peer closed the connection before a whole response or reply.
    Closed,
    /// Nothing (or not enough) arrived within the read timeout.
    Timeout(Duration),
    /// The client codec could not encode the request.
    Encode(CodecError),
    /// The client codec rejected the bytes the server sent.
    BadResponse(CodecError),
    /// The peer spoke, but not as expected (a NATS handshake, a reply line).
    Protocol(String),
}

impl HarnessError {
    /// A read error as a harness error: a timeout is [`HarnessError::Timeout`].
    pub(crate) fn from_read(e: io::Error, within: Duration) -> HarnessError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HarnessError::Timeout(within),
            io::ErrorKind::UnexpectedEof => HarnessError::Closed,
            _ => HarnessError::Read(e),
        }
    }
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HarnessError::MissingBinary(path) => write!(
                f,
                "{} not found: build the binaries first (`cargo build --workspace --bins`, which scripts/test.sh does)",
                path.display()
            ),
            HarnessError::Spawn { program, source } => write!(f, "cannot spawn {}: {source}", program.display()),
            HarnessError::Exited { status, log } => match status {
                Some(status) => write!(f, "exited ({status}) before it was ready; its log:\n{log}"),
                None => write!(f, "closed its output before it was ready; its log:\n{log}"),
            },
            HarnessError::NotReady { within, log } => write!(f, "not ready within {within:?}; its log:\n{log}"),
            HarnessError::UnexpectedFirstLine(line) => write!(f, "unexpected first line {line:?}"),
            HarnessError::Connect(e) => write!(f, "connect: {e}"),
            HarnessError::Write(e) => write!(f, "write: {e}"),
            HarnessError::Read(e) => write!(f, "read: {e}"),
            HarnessError::Closed => write!(f, "connection closed before a whole response"),
            HarnessError::Timeout(within) => write!(f, "no response within {within:?}"),
            HarnessError::Encode(e) => write!(f, "cannot encode the request: {e}"),
            HarnessError::BadResponse(e) => write!(f, "invalid response: {e}"),
            HarnessError::Protocol(what) => write!(f, "unexpected answer: {what}"),
        }
    }
}

impl std::error::Error for HarnessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HarnessError::Spawn { source, .. } => Some(source),
            HarnessError::Connect(e) | HarnessError::Write(e) | HarnessError::Read(e) => Some(e),
            HarnessError::Encode(e) | HarnessError::BadResponse(e) => Some(e),
            _ => None,
        }
    }
}
