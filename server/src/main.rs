//! `inlet-server`: parses flags, sets up logging, and hands over to the
//! library's server for the chosen `--mode` ([`inlet_server::serve_async`]
//! or [`inlet_server::blocking::serve_blocking`]), which opens the store,
//! binds and serves.

use std::process::ExitCode;

use clap::Parser;
use inlet_server::config::{BackupArgs, Command, Config, Mode, NewTokenArgs, TokenCommand};

/// mimalloc: per-thread free lists suit one runtime per worker thread, and it
/// does not keep growing and trimming arenas under load as glibc's does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = Config::parse();
    match &config.command {
        Some(Command::Token(TokenCommand::New(args))) => return token_new(args),
        Some(Command::Backup(args)) => return backup(args),
        None => {}
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

/// `inlet-server backup --data-dir DIR OUT`: a consistent copy of the store
/// while a server may be serving from it; one line on stdout when done.
fn backup(args: &BackupArgs) -> ExitCode {
    match inlet_server::store::backup(&args.data_dir, &args.out, args.force) {
        Ok(copied) => {
            println!("backed up {} events ({} bytes) to {}", copied.events, copied.bytes, args.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                text.push_str(&format!(": {c}"));
                cause = c.source();
            }
            eprintln!("inlet-server backup: {text}");
            ExitCode::FAILURE
        }
    }
}
