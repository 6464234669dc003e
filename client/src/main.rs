//! `inlet-client`: the command-line client of inlet. Each subcommand lives in
//! its own module; all of them speak HTTP/1.1 through the shared client codec
//! over `Framed<TcpStream, ClientCodec>`.
//!
//! Exit codes (see `exit.rs`): 0 everything accepted, 1 the server refused
//! input, 2 usage error, 3 server unreachable or events not acknowledged,
//! 4 timeout, 5 server error.

mod bench;
mod conn;
mod duration;
mod events;
mod exit;
mod hold;
mod post;
mod probe;
mod send;
mod stats;
#[cfg(test)]
mod testserver;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "inlet-client", version, about = "Send events to inlet, load-test it, and read them back")]
struct Cli {
    /// Server address, host:port.
    #[arg(long, global = true, env = "INLET_SERVER", default_value = "127.0.0.1:8080")]
    server: String,

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
    /// Print the server's counters (GET /stats).
    Stats,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("inlet-client: cannot start the runtime: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Send(args) => send::run(&cli.server, args).await,
            Command::Post(args) => post::run(&cli.server, args).await,
            Command::Bench(args) => bench::run(&cli.server, args).await,
            Command::Hold(args) => hold::run(&cli.server, args).await,
            Command::Probe(args) => probe::run(&cli.server, args).await,
            Command::Events(args) => events::run(&cli.server, args).await,
            Command::Stats => stats::run(&cli.server).await,
        }
    });
    ExitCode::from(code)
}
