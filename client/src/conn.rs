//! Connections: `Framed<TcpStream, ClientCodec>` plus one-shot helpers.

use std::io;

use futures::{SinkExt, StreamExt};
use inlet_shared::http::{ClientCodec, ClientRequest, ClientResponse, CodecError};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

pub type Transport = Framed<TcpStream, ClientCodec>;

/// Opens a connection to `server` (host:port).
pub async fn connect(server: &str) -> io::Result<Transport> {
    let stream = TcpStream::connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(Framed::new(stream, ClientCodec::new(server.to_string())))
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("cannot reach {0}: {1}")]
    Connect(String, io::Error),
    #[error("connection failed: {0}")]
    Codec(#[from] CodecError),
    #[error("the server closed the connection without answering")]
    Closed,
}

/// Sends one request and waits for its response.
pub async fn exchange(t: &mut Transport, req: ClientRequest) -> Result<ClientResponse, ExchangeError> {
    t.send(req).await?;
    match t.next().await {
        Some(Ok(res)) => Ok(res),
        Some(Err(e)) => Err(e.into()),
        None => Err(ExchangeError::Closed),
    }
}

/// Connects, sends one request, returns its response.
pub async fn once(server: &str, req: ClientRequest) -> Result<ClientResponse, ExchangeError> {
    let mut t = connect(server).await.map_err(|e| ExchangeError::Connect(server.to_string(), e))?;
    exchange(&mut t, req).await
}

/// Prints an error to stderr and returns the matching exit code.
pub fn report(e: &ExchangeError) -> u8 {
    eprintln!("inlet-client: {e}");
    crate::exit::UNREACHABLE
}
