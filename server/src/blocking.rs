//! `--mode blocking`: the stage-1 design, kept on purpose to show why it
//! fails. One thread, `std::net`, one connection at a time, no timeouts:
//! while one client holds its connection open without finishing a request,
//! `read` blocks and nobody else is served (SPEC §2).
//!
//! It speaks the same protocol through the same [`ServerCodec`] and answers
//! through the same request handling as the async server's connection
//! driver (routing, metrics, keep-alive); only the I/O model differs.
//! Nothing in the async server depends on this module.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use bytes::BytesMut;
use inlet_shared::http::{Body, BoxedInbound, CodecError, Continue, Response, ServerCodec};
use tokio_util::codec::{Decoder, Encoder};

use crate::config::Config;
use crate::connection::{answer, closing_problem, refuse_continue};
use crate::handlers::App;
use crate::{respond, server, store};

/// `--mode blocking`: serves one connection at a time until the process is
/// stopped.
pub fn serve_blocking(config: Config) -> Result<(), crate::StartError> {
    // The demonstration speaks plain HTTP only; serving it when TLS was asked
    // for would send what the operator meant to protect in clear text.
    if config.tls_files().is_some() {
        return Err(crate::StartError::Refused(
            "--mode blocking serves plain HTTP only; it cannot be combined with --tls-cert/--tls-key".into(),
        ));
    }
    // A current-thread runtime only to drive the (async) store and handlers
    // to completion, one request at a time, and to catch signals.
    let auth = config.auth()?;
    let schemas = config.schemas()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let store = runtime.block_on(store::open(&config))?;
    let app = Arc::new(App::new(store, &config).with_auth(auth).with_schemas(schemas));
    crate::log_access(&app);
    let listener = TcpListener::bind(config.listen)?;

    // SIGINT/SIGTERM: the accept loop below cannot be interrupted, so a
    // watcher thread closes the store and exits the process. It also
    // reloads on SIGHUP; its handlers are in place before `listening on`.
    let watcher_app = app.clone();
    let (ready, watching) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(_) => return,
        };
        rt.block_on(async {
            tokio::spawn(crate::reload_on_sighup(watcher_app.clone(), None));
            let stop = crate::shutdown::signal();
            let _ = ready.send(());
            stop.await;
            let _ = watcher_app.store.close().await;
        });
        std::process::exit(0);
    });
    let _ = watching.recv();
    server::announce(listener.local_addr()?);
    tracing::warn!("blocking mode: one connection at a time, no timeouts (a demonstration, not for production)");

    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                app.stats.connection_opened();
                serve(stream, &app, &config, &runtime);
                app.stats.connection_closed();
            }
            Err(e) => tracing::warn!("accept failed: {e}"),
        }
    }
    Ok(())
}

/// Serves one connection to its end. Blocks in `read` for as long as the
/// client likes: this is the freeze.
fn serve(mut stream: TcpStream, app: &App, config: &Config, runtime: &tokio::runtime::Runtime) {
    let mut codec = ServerCodec::new(config.server_settings().limits);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut out = BytesMut::new();
    let mut chunk = [0u8; 8 * 1024];
    let mut credentials = crate::auth::CredentialCache::default();
    loop {
        // Answer everything already buffered, then write once.
        loop {
            match codec.decode_boxed(&mut buf) {
                Ok(Some(BoxedInbound::Continue(head))) => match refuse_continue(app, &head) {
                    Some(res) => return write_final(&mut stream, &mut codec, &mut out, res),
                    None => {
                        let _ = codec.encode(Continue, &mut out);
                    }
                },
                Ok(Some(BoxedInbound::Request(req))) => {
                    let mut res = runtime.block_on(answer(app, *req, true, &mut credentials));
                    // A streamed body (a `GET /events` page, bounded by
                    // `--max-page-bytes`) is collected and sent whole, with
                    // its length (also for `HEAD`, and for HTTP/1.0, which
                    // takes no chunked coding): this mode writes one buffer
                    // per read.
                    res.body = match std::mem::replace(&mut res.body, Body::Taken) {
                        Body::Stream(page) => match runtime.block_on(page.collect()) {
                            Ok(whole) => Body::Full(whole),
                            Err(_) => {
                                // The page was cut: the answers before it
                                // still go out, then the connection closes.
                                let _ = stream.write_all(&out);
                                return;
                            }
                        },
                        whole => whole,
                    };
                    if res.closes() {
                        return write_final(&mut stream, &mut codec, &mut out, res);
                    }
                    let _ = codec.encode(res, &mut out);
                }
                Ok(None) => break,
                Err(CodecError::Http(e)) => {
                    let res = closing_problem(app, respond::http_error(e));
                    return write_final(&mut stream, &mut codec, &mut out, res);
                }
                Err(CodecError::Io(_)) => return,
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                if let Err(CodecError::Http(e)) = codec.decode_eof(&mut buf) {
                    let res = closing_problem(app, respond::http_error(e));
                    write_final(&mut stream, &mut codec, &mut out, res);
                }
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return,
        }
    }
}

fn write_final(stream: &mut TcpStream, codec: &mut ServerCodec, out: &mut BytesMut, res: Response) {
    let _ = codec.encode(res, out);
    let _ = stream.write_all(out);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}
