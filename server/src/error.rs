//! Why the server could not start (or stopped on its own): the one error
//! type the library's entry points return. Each variant keeps its cause;
//! `main` prints it on one line and exits 1.

use crate::auth::TokensError;
use crate::store::OpenError;
use crate::tls::TlsError;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The flags ask for something the server will not do (e.g. anonymous
    /// serving off loopback, or TLS in blocking mode).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Tokens(#[from] TokensError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Store(#[from] OpenError),
    /// Binding, runtimes, threads.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
