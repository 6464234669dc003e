//! A running `inlet-server` ([`Server`]) and where the workspace binaries
//! are ([`binary`]).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use inlet_shared::http::{ClientRequest, ClientResponse};

use crate::{json, Conn, HarnessError, PATIENCE};

/// Path of a binary built from this workspace; panics if it is not built.
pub fn binary(name: &str) -> PathBuf {
    try_binary(name).unwrap_or_else(|e| panic!("{e}"))
}

/// Path of a binary built from this workspace, [`HarnessError::MissingBinary`]
/// if it is not built. The binaries are expected in the target directory
/// of the test executable.
pub fn try_binary(name: &str) -> Result<PathBuf, HarnessError> {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target directory");
    let path = dir.join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(HarnessError::MissingBinary(path))
    }
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
    /// `listening on` line; panics if it does not come.
    pub fn start(args: &[&str]) -> Server {
        Server::try_start(args).unwrap_or_else(|e| panic!("inlet-server did not start: {e}"))
    }

    /// [`Server::start`] that answers why the server did not start (it
    /// exited, for one, on a flag it refuses) instead of panicking.
    pub fn try_start(args: &[&str]) -> Result<Server, HarnessError> {
        let data_dir = tempfile::tempdir().expect("temp dir");
        Server::try_start_in(data_dir, args)
    }

    /// [`Server::start`] on an existing data directory.
    pub fn start_in(data_dir: tempfile::TempDir, args: &[&str]) -> Server {
        Server::try_start_in(data_dir, args).unwrap_or_else(|e| panic!("inlet-server did not start: {e}"))
    }

    pub fn try_start_in(data_dir: tempfile::TempDir, args: &[&str]) -> Result<Server, HarnessError> {
        let mut cmd = Command::new(try_binary("inlet-server")?);
        if !args.contains(&"--listen") {
            cmd.arg("--listen").arg("127.0.0.1:0");
        }
        cmd.arg("--data-dir").arg(data_dir.path());
        if !args.contains(&"--store") {
            cmd.arg("--store").arg("memory");
        }
        cmd.args(args);
        Server::try_spawn(cmd, data_dir)
    }

    /// Spawns `cmd` (an `inlet-server` command line) and waits for its
    /// `listening on` line.
    pub fn spawn(cmd: Command, data_dir: tempfile::TempDir) -> Server {
        Server::try_spawn(cmd, data_dir).unwrap_or_else(|e| panic!("inlet-server did not start: {e}"))
    }

    pub fn try_spawn(mut cmd: Command, data_dir: tempfile::TempDir) -> Result<Server, HarnessError> {
        let stderr_path = data_dir.path().join("server.stderr");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        cmd.stdout(Stdio::piped()).stderr(stderr).stdin(Stdio::null());
        cmd.env_remove("RUST_LOG");
        let program = PathBuf::from(cmd.get_program());
        let mut child = cmd.spawn().map_err(|source| HarnessError::Spawn { program, source })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let log = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let line = match rx.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HarnessError::NotReady { within: PATIENCE, log: log() });
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Its stdout closed without a line: it is exiting.
                let status = wait_for(&mut child, PATIENCE);
                if status.is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return Err(HarnessError::Exited { status, log: log() });
            }
        };
        match line.strip_prefix("listening on ").and_then(|a| a.parse().ok()) {
            Some(addr) => Ok(Server { child: Some(child), addr, data_dir, stderr_path }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(HarnessError::UnexpectedFirstLine(line))
            }
        }
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
        let status = wait_for(self.child.as_mut()?, within);
        if status.is_some() {
            self.child = None;
        }
        status
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

    /// A connection with a client codec; panics if refused.
    pub fn connect(&self) -> Conn {
        Conn::open(self.addr)
    }

    /// A connection with a client codec, [`HarnessError::Connect`] if refused.
    pub fn try_connect(&self) -> Result<Conn, HarnessError> {
        Conn::try_open(self.addr)
    }

    /// One request on a fresh connection; panics if there is no response.
    pub fn request(&self, req: ClientRequest) -> ClientResponse {
        self.try_request(req).unwrap_or_else(|e| panic!("request to {}: {e}", self.addr))
    }

    /// One request on a fresh connection, or why there is no response (a
    /// refused or closed connection, a timeout).
    pub fn try_request(&self, req: ClientRequest) -> Result<ClientResponse, HarnessError> {
        self.try_connect()?.try_exchange(req)
    }

    pub fn get(&self, target: &str) -> ClientResponse {
        self.request(ClientRequest::get(target.to_string()))
    }

    pub fn try_get(&self, target: &str) -> Result<ClientResponse, HarnessError> {
        self.try_request(ClientRequest::get(target.to_string()))
    }

    pub fn post(&self, target: &str, content_type: &'static str, body: impl Into<bytes::Bytes>) -> ClientResponse {
        self.request(ClientRequest::post(target.to_string(), content_type, body))
    }

    pub fn try_post(
        &self,
        target: &str,
        content_type: &'static str,
        body: impl Into<bytes::Bytes>,
    ) -> Result<ClientResponse, HarnessError> {
        self.try_request(ClientRequest::post(target.to_string(), content_type, body))
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

/// Waits for `child` to exit, at most `within`.
pub(crate) fn wait_for(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `inlet-server` (memory store, a fresh data directory, `args`)
/// expecting it to refuse to start: checks exit code 1 and that no
/// `listening on` was printed, and returns its stderr. Panics if the server
/// starts and keeps running for [`PATIENCE`].
pub fn refused_start(args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(binary("inlet-server"));
    if !args.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    let mut child = cmd
        .args(["--store", "memory", "--data-dir"])
        .arg(dir.path())
        .args(args)
        .env_remove("INLET_TOKENS")
        .env_remove("INLET_ALLOW_ANONYMOUS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn inlet-server");
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started instead of refusing: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    assert_eq!(out.status.code(), Some(1), "{args:?}");
    assert!(out.stdout.is_empty(), "no `listening on` expected: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).expect("utf-8 stderr")
}

/// A token made by the real `inlet-server token new`: its secret (the first
/// line) and its `[[token]]` entry (the lines that are not comments).
pub fn new_token(name: &str, scopes: &str) -> (String, String) {
    let out = Command::new(binary("inlet-server"))
        .args(["token", "new", "--name", name, "--scope", scopes])
        .output()
        .expect("run token new");
    assert!(out.status.success(), "token new failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let mut lines = stdout.lines();
    let secret = lines.next().expect("the secret line").to_string();
    let entry: String = lines.filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect();
    (secret, entry)
}
