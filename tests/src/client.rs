//! Runs the `inlet-client` binary.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use crate::binary;

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
