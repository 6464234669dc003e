//! `inlet-server`: parses flags, sets up logging, and hands over to the
//! library's server for the chosen `--mode` ([`inlet_server::serve_async`]
//! or [`inlet_server::blocking::serve_blocking`]), which opens the store,
//! binds and serves.

use std::process::ExitCode;

use clap::Parser;
use inlet_server::config::{Command, Config, Mode, NewTokenArgs, TokenCommand};

/// mimalloc: per-thread free lists suit one runtime per worker thread, and it
/// does not keep growing and trimming arenas under load as glibc's does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = Config::parse();
    if let Some(Command::Token(TokenCommand::New(args))) = &config.command {
        return token_new(args);
    }
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

/// `inlet-server token new`: on stdout, the secret alone on the first line
/// (so that `| head -1` takes it), then the entry for the tokens file.
fn token_new(args: &NewTokenArgs) -> ExitCode {
    match inlet_server::auth::new_token(&args.name, &args.scopes) {
        Ok(token) => {
            println!("{}", token.secret);
            println!("# ^ the secret, shown this once: give it to the sender; it is stored nowhere");
            println!("# add to the tokens file, then reload (kill -HUP <pid>):");
            print!("{}", token.entry);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("inlet-server: {e}");
            // A bad --name or --scope is a usage error, as clap's own are.
            match e {
                inlet_server::auth::NewTokenError::Random(_) => ExitCode::FAILURE,
                _ => ExitCode::from(2),
            }
        }
    }
}
