//! `inlet-client`: the command-line client of inlet. Each subcommand lives in
//! its own module; all of them speak HTTP/1.1 through the shared client codec
//! over `Framed<Stream, ClientCodec>`, where a [`conn::Stream`] is plain TCP
//! or TLS.
//!
//! Exit codes (see `exit.rs`): 0 everything accepted, 1 the server refused
//! input, 2 usage error, 3 server unreachable or events not acknowledged,
//! 4 timeout, 5 server error, 6 `401`, 7 `403`, 8 TLS failure. `validate`
//! and `post --schemas` exit 1 when the schemas refuse the input.

mod bench;
mod compress;
mod conn;
mod events;
mod exit;
mod hold;
mod post;
mod probe;
mod rejected;
mod retry;
mod send;
mod stats;
mod tail;
#[cfg(test)]
mod testserver;
mod tls;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "inlet-client", version, about = "Send events to inlet, load-test it, and read them back")]
struct Cli {
    /// Server address: host:port, http://host:port or https://host:port.
    #[arg(long, global = true, env = "INLET_SERVER", default_value = "127.0.0.1:8080")]
    server: String,
    /// Bearer token sent as `Authorization: Bearer <token>`; never printed.
    #[arg(long, global = true, env = "INLET_TOKEN", hide_env_values = true)]
    token: Option<conn::Token>,
    /// Speak TLS (implied by --server https://...).
    #[arg(long, global = true)]
    tls: bool,
    /// Trust only this CA (PEM) instead of the system's store; implies TLS.
    #[arg(long, global = true, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for mTLS, with --key; implies TLS.
    #[arg(long, global = true, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// Client private key (PEM) for --cert.
    #[arg(long, global = true, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Do not check the server's certificate (warns loudly); implies TLS.
    #[arg(long, global = true)]
    insecure: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send one event built from flags and print the response.
    Send(send::Args),
    /// Stream NDJSON events from a file or stdin, pipelined and retried.
    Post(post::Args),
    /// Generate load and report throughput and latency percentiles.
    Bench(bench::Args),
    /// Open connections and hold them idle (or trickle a partial request).
    Hold(hold::Args),
    /// Send one valid request; exit 0 only if answered in time.
    Probe(probe::Args),
    /// Read stored events (GET /events) as JSON lines.
    Events(events::Args),
    /// Read the refused events a server keeps (GET /rejected, --keep-rejected)
    /// as JSON lines.
    Rejected(rejected::Args),
    /// Print the server's counters (GET /stats).
    Stats,
    /// Check an NDJSON file offline against --schemas DIR, with the server's
    /// rules and errors; sends nothing.
    Validate(validate::Args),
    /// Follow new events as they are stored (GET /events/stream), as JSON lines.
    Tail(tail::Args),
}

/// Where the server is and how to talk to it, from the global flags; on
/// failure the message is printed and the exit code returned.
fn endpoint(cli: &Cli) -> Result<conn::Endpoint, u8> {
    let server = conn::parse_server(&cli.server).map_err(|e| {
        eprintln!("inlet-client: {e}");
        exit::USAGE
    })?;
    if let Some(token) = &cli.token {
        if let Err(e) = token.check() {
            eprintln!("inlet-client: {e}");
            return Err(exit::USAGE);
        }
    }
    let wants_tls = cli.tls || cli.ca.is_some() || cli.cert.is_some() || cli.insecure;
    if wants_tls && !server.https && cli.server.starts_with("http://") {
        eprintln!("inlet-client: --server {} is plain http:// but TLS flags were given", cli.server);
        return Err(exit::USAGE);
    }
    let tls = if server.https || wants_tls {
        let options =
            tls::Options { ca: cli.ca.clone(), cert: cli.cert.clone(), key: cli.key.clone(), insecure: cli.insecure };
        if options.insecure {
            eprintln!("{}", tls::INSECURE_WARNING);
        }
        let config = tls::client_config(&options, tls::native_roots).map_err(|e| {
            eprintln!("inlet-client: {e}");
            e.code
        })?;
        Some(Arc::new(config))
    } else {
        None
    };
    if cli.token.is_some() && tls.is_none() && !is_loopback(&server.host) {
        eprintln!(
            "inlet-client: warning: sending the token in clear text to {}; use --server https://...",
            server.addr
        );
    }
    Ok(conn::Endpoint::new(server, tls, cli.token.as_ref()))
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Validate(args) = cli.command {
        return ExitCode::from(validate::run(args));
    }
    let ep = match endpoint(&cli) {
        Ok(ep) => Arc::new(ep),
        Err(code) => return ExitCode::from(code),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("inlet-client: cannot start the runtime: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Send(args) => send::run(&ep, args).await,
            Command::Post(args) => post::run(ep, args).await,
            Command::Bench(args) => bench::run(ep, args).await,
            Command::Hold(args) => hold::run(ep, args).await,
            Command::Probe(args) => probe::run(&ep, args).await,
            Command::Events(args) => events::run(&ep, args).await,
            Command::Rejected(args) => rejected::run(&ep, args).await,
            Command::Stats => stats::run(&ep).await,
            Command::Validate(_) => exit::USAGE,
            Command::Tail(args) => tail::run(&ep, args).await,
        }
    });
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "LOCALHOST", "127.0.0.1", "127.8.9.10", "::1"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["inlet.example", "10.0.0.1", "0.0.0.0", "::"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
