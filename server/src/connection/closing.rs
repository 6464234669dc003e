//! How a connection ends when it has something left to say: the final
//! answer (a problem such as `408`, or any response with
//! `Connection: close`) is written after whatever is queued, the write side
//! is shut, and the connection lingers.
//!
//! Lingering: the client may still be sending (the rest of a body the
//! server will not read, pipelined requests after the last answered one).
//! Closing a socket with unread data makes the kernel send a reset, which
//! can destroy the answer before the client has read it; so the server
//! half-closes, then reads and discards for a short while.

use std::time::Duration;

use futures::SinkExt;
use inlet_shared::http::Response;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;
use tokio_util::codec::{Encoder, Framed};

/// How long writing the final answer may take: a client that does not read
/// it is not waited for forever.
const FINAL_WRITE_TIME: Duration = Duration::from_secs(60);

/// How long, and how much, unread request data is drained after the final
/// answer.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Writes `res` (which closes the connection) after what is queued, then
/// half-closes and lingers. The one way a connection ends with an answer.
pub(crate) async fn close_with<S, C>(mut framed: Framed<S, C>, res: Response)
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: Encoder<Response>,
    C::Error: std::fmt::Display,
{
    debug_assert!(res.closes(), "a final answer says Connection: close");
    match timeout(FINAL_WRITE_TIME, framed.send(res)).await {
        Ok(Ok(())) => linger(framed.into_inner()).await,
        Ok(Err(e)) => tracing::debug!("final answer not written: {e}"),
        Err(_) => tracing::debug!("final answer not read by the client in {FINAL_WRITE_TIME:?}; dropped"),
    }
}

/// Writes what is queued (the end of a streamed answer that closes), then
/// half-closes and lingers.
pub(crate) async fn close_flushed<S, C>(mut framed: Framed<S, C>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: Encoder<Response>,
    C::Error: std::fmt::Display,
{
    match timeout(FINAL_WRITE_TIME, SinkExt::<Response>::flush(&mut framed)).await {
        Ok(Ok(())) => linger(framed.into_inner()).await,
        Ok(Err(e)) => tracing::debug!("final answer not written: {e}"),
        Err(_) => tracing::debug!("final answer not read by the client in {FINAL_WRITE_TIME:?}; dropped"),
    }
}

/// Half-closes, then drains what the client still sends (at most
/// `LINGER_BYTES`, for at most `LINGER_TIME`, until it closes).
async fn linger<S>(mut io: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let drain = async {
        if io.shutdown().await.is_err() {
            return;
        }
        // On the heap: a stack array here would sit in every connection's future.
        let mut sink = vec![0u8; 4096];
        let mut drained = 0usize;
        while drained < LINGER_BYTES {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = timeout(LINGER_TIME, drain).await;
}
