//! `inlet-server`: parses flags, sets up logging, and hands over to the
//! library's server for the chosen `--mode` ([`inlet_server::serve_async`]
//! or [`inlet_server::blocking::serve_blocking`]), which opens the store,
//! binds and serves.

use std::process::ExitCode;

use clap::Parser;
use inlet_server::config::{Config, Mode};

/// mimalloc: per-thread free lists suit one runtime per worker thread, and it
/// does not keep growing and trimming arenas under load as glibc's does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = Config::parse();
    inlet_server::logging::init(config.log_format);
    let result = match config.mode {
        Mode::Async => inlet_server::serve_async(config),
        Mode::Blocking => inlet_server::blocking::serve_blocking(config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inlet-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}
