//! `inlet-server`: parses flags, sets up logging, binds, and hands over to
//! [`inlet_server::run`]. Everything else lives in the library.

use std::process::ExitCode;

/// mimalloc: per-thread free lists suit one runtime per worker thread, and it
/// does not keep growing and trimming arenas under load as glibc's does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use inlet_server::config::{Config, Mode};

fn main() -> ExitCode {
    let config = Config::parse();
    inlet_server::logging::init(config.log_format);
    let result = match config.mode {
        Mode::Async => inlet_server::run_async(config),
        Mode::Blocking => inlet_server::blocking::run(config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inlet-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}
