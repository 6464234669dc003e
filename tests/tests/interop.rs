//! Interop with a client nobody here wrote: the official CloudEvents Python
//! SDK sends structured and binary events, reads them back through
//! `GET /events`, and finds them unchanged.
//!
//! Needs a Python with `cloudevents` 2.x: `scripts/test.sh` makes a
//! virtualenv and passes it in `INLET_PYTHON`. Without it the test is
//! ignored, not passed: run it with `--include-ignored`.

use std::process::Command;

use inlet_tests::Server;

#[test]
#[ignore = "needs INLET_PYTHON with the cloudevents SDK; scripts/test.sh runs it"]
fn python_cloudevents_sdk_round_trip() {
    let python = std::env::var("INLET_PYTHON")
        .expect("INLET_PYTHON: a python with `cloudevents` installed (scripts/test.sh sets it)");
    let s = Server::start(&[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/cloudevents_roundtrip.py");
    let out = Command::new(python).arg(script).arg(s.addr.to_string()).output().expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "interop script failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("summary line");
    assert_eq!(summary["checked"], serde_json::json!(["py-s1", "py-s2", "py-b1", "py-b2"]));
    assert_eq!(summary["stored"], 4);
    let stats = s.stats();
    assert_eq!(stats["accepted"], 4);
    assert_eq!(stats["duplicates"], 1);
}
