//! `inlet-server`: parses flags, sets up logging, binds, and hands over to
//! [`inlet_server::run`]. Everything else lives in the library.

use std::process::ExitCode;

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
