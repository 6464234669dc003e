//! Blocking connections to a server: [`Conn`] speaks through the shared
//! client codec, [`raw_exchange`] sends raw bytes and reads until close.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::BytesMut;
use inlet_shared::http::{ClientCodec, ClientRequest, ClientResponse};
use tokio_util::codec::{Decoder, Encoder};

use crate::{HarnessError, PATIENCE};

/// A blocking connection speaking through the shared client codec. Reads
/// time out after [`PATIENCE`] unless the test sets another timeout on `stream`.
pub struct Conn {
    pub stream: TcpStream,
    codec: ClientCodec,
    /// Bytes read but not yet decoded (a pipelined next response).
    buf: BytesMut,
}

impl Conn {
    /// Connects to `addr`; panics if it cannot.
    pub fn open(addr: SocketAddr) -> Conn {
        Conn::try_open(addr).unwrap_or_else(|e| panic!("cannot open a connection to {addr}: {e}"))
    }

    /// Connects to `addr`; [`HarnessError::Connect`] if refused.
    pub fn try_open(addr: SocketAddr) -> Result<Conn, HarnessError> {
        let stream = TcpStream::connect(addr).map_err(HarnessError::Connect)?;
        stream.set_read_timeout(Some(PATIENCE)).map_err(HarnessError::Connect)?;
        Ok(Conn { stream, codec: ClientCodec::new(addr.to_string()), buf: BytesMut::new() })
    }

    /// Sends one request; panics if it cannot.
    pub fn send(&mut self, req: ClientRequest) {
        self.try_send(req).unwrap_or_else(|e| panic!("cannot send the request: {e}"))
    }

    /// Sends one request; [`HarnessError::Write`] if the peer is gone.
    pub fn try_send(&mut self, req: ClientRequest) -> Result<(), HarnessError> {
        let mut out = BytesMut::new();
        self.codec.encode(req, &mut out).map_err(HarnessError::Encode)?;
        self.try_send_raw(&out)
    }

    /// Writes raw bytes; responses are still read with the codec.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.try_send_raw(bytes).unwrap_or_else(|e| panic!("cannot send raw bytes: {e}"))
    }

    /// Writes raw bytes; [`HarnessError::Write`] if the peer is gone.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> Result<(), HarnessError> {
        self.stream.write_all(bytes).map_err(HarnessError::Write)
    }

    /// Reads one response; panics on a timeout, a close or a malformed response.
    pub fn recv(&mut self) -> ClientResponse {
        self.try_response().unwrap_or_else(|e| panic!("no response: {e}"))
    }

    /// Reads one response, `None` if the connection closed (or was reset)
    /// first; panics on a timeout or a malformed response.
    pub fn try_recv(&mut self) -> Option<ClientResponse> {
        match self.try_response() {
            Ok(res) => Some(res),
            Err(HarnessError::Closed | HarnessError::Read(_)) => None,
            Err(e) => panic!("no response: {e}"),
        }
    }

    /// Reads one response, or says why there is none: [`HarnessError::Closed`],
    /// [`HarnessError::Read`] (a reset), [`HarnessError::Timeout`] or
    /// [`HarnessError::BadResponse`].
    pub fn try_response(&mut self) -> Result<ClientResponse, HarnessError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(res) = self.codec.decode(&mut self.buf).map_err(HarnessError::BadResponse)? {
                return Ok(res);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    // A response delimited by the close, or a truncated one.
                    return self.codec.decode_eof(&mut self.buf).ok().flatten().ok_or(HarnessError::Closed);
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let within = self.stream.read_timeout().ok().flatten().unwrap_or(PATIENCE);
                    return Err(HarnessError::from_read(e, within));
                }
            }
        }
    }

    /// Sends `req` and reads its response, without panicking.
    pub fn try_exchange(&mut self, req: ClientRequest) -> Result<ClientResponse, HarnessError> {
        self.try_send(req)?;
        self.try_response()
    }

    /// Whether the server has closed the connection (reads EOF within `within`).
    pub fn is_closed_within(&mut self, within: Duration) -> bool {
        self.stream.set_read_timeout(Some(within)).expect("timeout");
        let mut chunk = [0u8; 1024];
        let closed = loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                    break false
                }
                Err(_) => break true,
            }
        };
        self.stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        closed
    }
}

/// Sends `bytes` on a new connection, half-closes, and returns everything the
/// server wrote until it closed.
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream.write_all(bytes).expect("write");
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The body of a response as JSON; panics (showing the body) if it is not.
pub fn json(res: &ClientResponse) -> serde_json::Value {
    serde_json::from_slice(&res.body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&res.body)))
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}
