//! The `inlet-client` binary against in-test servers (plain and TLS, from
//! the same stand-in server the unit tests use): exit codes, the
//! `--insecure` warning, and a token that never shows up in any output.

#[path = "../src/testserver.rs"]
#[allow(dead_code)]
mod testserver;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use testserver::{Answer, Pki, Request};

const SECRET: &str = "s3cret-0123456789abcdef";

fn client(args: &[&str], envs: &[(&str, &str)], stdin: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_inlet-client"));
    cmd.args(args).env_remove("INLET_TOKEN").env_remove("INLET_SERVER");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// 202 with the right token, 401 without, 403 for `/stats`.
fn guarded(_: usize, req: &Request) -> Answer {
    if req.header("authorization") != Some(&format!("Bearer {SECRET}")) {
        return testserver::problem(401, "WWW-Authenticate: Bearer realm=\"inlet\"\r\n", "missing or unknown token");
    }
    if req.body.is_empty() {
        return testserver::problem(403, "", "this token has no read scope");
    }
    testserver::accepted(req.body.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count())
}

fn pem_file(pem: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(pem.as_bytes()).unwrap();
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_sent_and_never_shown() {
    let addr = testserver::start_with(None, guarded).await.to_string();
    let ok = client(&["--server", &addr, "send", "--type", "t.x"], &[("INLET_TOKEN", SECRET)], "");
    let (code, out, _) = text(&ok);
    assert_eq!((code, out.starts_with("202 ")), (0, true), "{ok:?}");

    let wrong = "wrong-token-value";
    let lines = "{\"id\":\"1\"}\n{\"id\":\"2\"}\n";
    for o in [
        client(&["--server", &addr, "send", "--type", "t.x"], &[("INLET_TOKEN", wrong)], ""),
        client(&["--server", &addr, "--token", wrong, "post", "-", "--json"], &[], lines),
        client(
            &["--server", &addr, "--token", wrong, "bench", "--requests", "3", "--connections", "1", "--json"],
            &[],
            "",
        ),
    ] {
        let (code, out, err) = text(&o);
        assert_eq!(code, 6, "{o:?}");
        // `send` prints the answer as it came; the others the problem's detail.
        assert!(
            err.contains("HTTP 401: missing or unknown token")
                || out.contains("\"detail\":\"missing or unknown token\""),
            "{o:?}"
        );
        assert!(!out.contains(wrong) && !err.contains(wrong), "{o:?}");
    }
    let post = client(&["--server", &addr, "--token", wrong, "post", "-", "--json"], &[], lines);
    let json: serde_json::Value = serde_json::from_slice(&post.stdout).unwrap();
    assert_eq!(
        (json["accepted"].as_u64(), json["stopped"].as_str()),
        (Some(0), Some("HTTP 401: missing or unknown token"))
    );

    // 403: its own code, with the detail.
    let (code, _, err) = text(&client(&["--server", &addr, "stats"], &[("INLET_TOKEN", SECRET)], ""));
    assert_eq!((code, err.trim()), (7, "inlet-client: HTTP 403: this token has no read scope"));

    // A malformed token is refused without being repeated; --help hides it.
    let (code, out, err) = text(&client(&["--server", &addr, "--token", "two words", "stats"], &[], ""));
    assert_eq!(code, 2);
    assert!(!out.contains("two words") && !err.contains("two words"), "{err}");
    let (_, help, _) = text(&client(&["--help"], &[("INLET_TOKEN", SECRET)], ""));
    assert!(help.contains("--token") && !help.contains(SECRET), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_ca_without_ca_and_insecure() {
    let pki = Pki::new();
    let addr = testserver::start_with(Some(pki.server_config(false)), |_, _| testserver::accepted(1)).await;
    let server = format!("https://{addr}");
    let ca = pem_file(&pki.ca_pem);
    let ca_path = ca.path().to_str().unwrap();

    let (code, out, err) = text(&client(&["--server", &server, "--ca", ca_path, "send", "--type", "t.x"], &[], ""));
    assert_eq!((code, out.starts_with("202 "), err.as_str()), (0, true, ""));
    // --tls with host:port is the same.
    let (code, _, _) = text(&client(&["--server", &addr.to_string(), "--tls", "--ca", ca_path, "probe"], &[], ""));
    assert_eq!(code, 0);

    // The system's store does not hold the test CA (or there is none).
    let (code, out, err) = text(&client(&["--server", &server, "send", "--type", "t.x"], &[], ""));
    assert_eq!((code, out.as_str()), (8, ""), "{err}");
    assert!(err.contains("certificate"), "{err}");

    let (code, out, err) = text(&client(&["--server", &server, "--insecure", "send", "--type", "t.x"], &[], ""));
    assert_eq!((code, out.starts_with("202 ")), (0, true), "{err}");
    assert!(err.starts_with("inlet-client: WARNING: --insecure: the server's certificate is NOT checked."), "{err}");

    // TLS flags with an http:// server are a usage error.
    let (code, _, _) = text(&client(&["--server", &format!("http://{addr}"), "--insecure", "stats"], &[], ""));
    assert_eq!(code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_with_cert_and_key() {
    let pki = Pki::new();
    let addr = testserver::start_with(Some(pki.server_config(true)), |_, _| testserver::accepted(1)).await;
    let server = format!("https://{addr}");
    let (ca, cert, key) = (pem_file(&pki.ca_pem), pem_file(&pki.client_cert_pem), pem_file(&pki.client_key_pem));
    let ca = ca.path().to_str().unwrap();
    let (cert, key) = (cert.path().to_str().unwrap(), key.path().to_str().unwrap());
    let lines = "{\"id\":\"1\"}\n{\"id\":\"2\"}\n{\"id\":\"3\"}\n";
    let o = client(
        &["--server", &server, "--ca", ca, "--cert", cert, "--key", key, "post", "-", "--connections", "2"],
        &[],
        lines,
    );
    let (code, out, _) = text(&o);
    assert_eq!(code, 0, "{o:?}");
    assert!(out.starts_with("accepted: 3\n"), "{out}");
    let (code, _, err) = text(&client(&["--server", &server, "--ca", ca, "post", "-"], &[], lines));
    assert_eq!(code, 8, "{err}");
    let (code, _, _) = text(&client(&["--server", &server, "--ca", ca, "--cert", cert, "stats"], &[], ""));
    assert_eq!(code, 2, "--cert without --key");
}
