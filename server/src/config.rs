//! Command-line flags. Every flag can also be set through the environment
//! variable named beside it (`INLET_*`); a flag on the command line wins.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use inlet_shared::event::ParseLimits;
use inlet_shared::http::Limits;

use inlet_shared::duration::parse_duration;

use crate::auth::{Auth, ClientCerts, Scope};
use crate::store;

/// sqlite: what a commit waits for (the flag's values; the store has its own
/// type, `store::SyncMode`, and knows nothing of flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SyncMode {
    /// fsync the WAL on every commit: nothing acknowledged is lost on power loss.
    Full,
    /// fsync only at checkpoints: survives a process crash, not a power loss.
    Normal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// tokio, one task per connection (the real server).
    Async,
    /// One thread, one connection at a time, no timeouts: the stage-1 design,
    /// kept to demonstrate how a single idle client freezes everybody.
    Blocking,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// Embedded SQLite event log under --data-dir (durable, the default).
    Sqlite,
    /// Nothing on disk; for tests and benchmarks.
    Memory,
    /// NATS JetStream: many servers feed one replicated stream.
    Jetstream,
}

/// `--unknown-types`: what happens to events whose type has no schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UnknownTypes {
    /// Accepted without validation.
    Allow,
    /// Refused (422 at the event's `type`).
    Reject,
}

/// The values of --when-full (the store has its own type, `store::WhenFull`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WhenFull {
    /// 503 until space is freed.
    Refuse,
    /// Delete the oldest events to make room.
    DropOldest,
}

/// `--retention`: a duration, not zero (keeping nothing is not a retention;
/// leave the flag out to keep forever).
fn parse_retention(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        Duration::ZERO => {
            Err("a retention of 0 would delete every event: leave --retention out to keep forever".into())
        }
        d => Ok(d),
    }
}

/// The longest `--nats-ack-timeout`: a request held longer than this is
/// better refused, and a typo (`5m` for `5s`) is caught at start.
pub const MAX_NATS_ACK_TIMEOUT: Duration = Duration::from_secs(300);

/// `--nats-ack-timeout`: a duration above zero and at most
/// [`MAX_NATS_ACK_TIMEOUT`].
fn parse_nats_ack_timeout(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        Duration::ZERO => Err("an ack timeout of 0 would refuse every write: give e.g. 5s".into()),
        d if d > MAX_NATS_ACK_TIMEOUT => Err(format!(
            "an ack timeout of {s} is over the most allowed, {}s: a request would be held that long",
            MAX_NATS_ACK_TIMEOUT.as_secs()
        )),
        d => Ok(d),
    }
}

/// A count that becomes a semaphore's permits (`--max-connections`, the
/// NATS places): tokio's semaphore holds at most `Semaphore::MAX_PERMITS`
/// and panics past it, so a larger number is refused here.
fn parse_permits(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{s:?} is not a count: {e}"))?;
    if n > tokio::sync::Semaphore::MAX_PERMITS {
        return Err(format!("{n} is more than the {} allowed", tokio::sync::Semaphore::MAX_PERMITS));
    }
    Ok(n)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// inlet-server: HTTP/1.1 CloudEvents intake.
#[derive(Debug, Clone, Parser)]
#[command(name = "inlet-server", version, about)]
pub struct Config {
    /// Without a subcommand the server runs.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Tokens file (TOML): who may write, read and scrape (see
    /// docs/security.md). Without it the server is anonymous, which it
    /// allows on a loopback address only (see --allow-anonymous).
    /// Reloaded on SIGHUP.
    #[arg(long, env = "INLET_TOKENS")]
    pub tokens: Option<PathBuf>,

    /// Serve anonymously (no --tokens) on a non-loopback address: anyone who
    /// can reach the port may write and read every event.
    #[arg(long, env = "INLET_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,

    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, env = "INLET_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Server design.
    #[arg(long, env = "INLET_MODE", value_enum, default_value = "async")]
    pub mode: Mode,

    /// Where accepted events are kept.
    #[arg(long, env = "INLET_STORE", value_enum, default_value = "sqlite")]
    pub store: StoreKind,

    /// Directory of the embedded store.
    #[arg(long, env = "INLET_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// sqlite: what a commit waits for. full: fsync every commit (an
    /// acknowledged event survives power loss); normal: survives a crash of
    /// the process only.
    #[arg(long, env = "INLET_SYNC", value_enum, default_value = "full")]
    pub sync: SyncMode,

    /// sqlite: requests waiting for the writer at most; more get 503.
    #[arg(long, env = "INLET_STORE_QUEUE", default_value_t = 4096)]
    pub store_queue: usize,

    /// sqlite: cap on the database size in bytes; what a write past it does
    /// is --when-full.
    #[arg(long, env = "INLET_MAX_STORE_BYTES")]
    pub max_store_bytes: Option<u64>,

    /// sqlite: what a write past --max-store-bytes does. refuse: 503 until
    /// space is freed; drop-oldest: delete the oldest events and keep
    /// accepting (a request over half the cap is still refused).
    #[arg(long, env = "INLET_WHEN_FULL", value_enum, default_value = "refuse")]
    pub when_full: WhenFull,

    /// Delete events older than this (e.g. 720h for 30 days, 90m);
    /// default: keep forever. sqlite: a background job on the writer thread,
    /// in batches; memory: the same; jetstream: the max age of the stream it
    /// creates (instead of --max-age).
    #[arg(long, env = "INLET_RETENTION", value_parser = parse_retention, conflicts_with = "max_age")]
    pub retention: Option<Duration>,

    /// sqlite, memory: how long the (source, id) of a deleted event is still
    /// answered as a duplicate; 0: forgotten at once.
    #[arg(long, env = "INLET_DEDUPE_WINDOW", default_value = "24h", value_parser = parse_duration)]
    pub dedupe_window: Duration,

    /// jetstream: NATS server URL(s), comma-separated or repeated.
    #[arg(long, env = "INLET_NATS_URL", value_delimiter = ',', default_value = "nats://127.0.0.1:4222")]
    pub nats_url: Vec<String>,

    /// jetstream: stream name (created if missing).
    #[arg(long, env = "INLET_STREAM", default_value = "INLET_EVENTS")]
    pub stream: String,

    /// jetstream: events go to `<prefix>.<type>`.
    #[arg(long, env = "INLET_SUBJECT_PREFIX", default_value = "inlet.events")]
    pub subject_prefix: String,

    /// jetstream: replicas of the stream it creates (1, 3 or 5).
    #[arg(long, env = "INLET_REPLICAS", default_value_t = 1)]
    pub replicas: usize,

    /// jetstream: max age of events in the stream it creates (0: forever).
    #[arg(long, env = "INLET_MAX_AGE", default_value = "0s", value_parser = parse_duration)]
    pub max_age: Duration,

    /// jetstream: max size of the stream it creates, bytes (-1: unlimited).
    #[arg(long, env = "INLET_MAX_STREAM_BYTES", default_value_t = -1, allow_hyphen_values = true)]
    pub max_stream_bytes: i64,

    /// jetstream: window in which a repeated (source, id) is dropped as a duplicate.
    #[arg(long, env = "INLET_DUPLICATE_WINDOW", default_value = "2m", value_parser = parse_duration)]
    pub duplicate_window: Duration,

    /// jetstream: the one deadline of each request at the store, from when
    /// it reaches it: its wait for a place, its publish and JetStream's ack
    /// (or a read's answer); past it, `503`. Above 0, at most 5m.
    #[arg(long, env = "INLET_NATS_ACK_TIMEOUT", default_value = "5s", value_parser = parse_nats_ack_timeout)]
    pub nats_ack_timeout: Duration,

    /// jetstream: atomic batches (requests of more than one event) this
    /// server has in flight at most; nats-server takes 50 per stream.
    #[arg(long, env = "INLET_NATS_BATCHES_IN_FLIGHT", default_value_t = 16, value_parser = parse_permits)]
    pub nats_batches_in_flight: usize,

    /// jetstream: groups of single-event requests this server has in flight
    /// at most; single events that arrive while all are taken go to NATS
    /// together as one atomic batch. 0: no grouping.
    #[arg(long, env = "INLET_NATS_GROUP_IN_FLIGHT", default_value_t = 16, value_parser = parse_permits)]
    pub nats_group_in_flight: usize,

    /// Worker threads, each with its own runtime and listening socket
    /// (SO_REUSEPORT); 0: one per CPU.
    #[arg(long, env = "INLET_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// Open connections at most; more are answered 503 and closed.
    #[arg(long, env = "INLET_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = parse_permits)]
    pub max_connections: usize,

    /// `GET /events/stream` subscribers open at once at most; more are
    /// answered 503 with Retry-After.
    #[arg(long, env = "INLET_MAX_SUBSCRIBERS", default_value_t = store::live::DEFAULT_MAX_SUBSCRIBERS)]
    pub max_subscribers: usize,

    /// Interval of the keep-alive comment on an idle stream (for tests).
    #[arg(long, env = "INLET_STREAM_KEEPALIVE", default_value = "15s", value_parser = parse_duration, hide = true)]
    pub stream_keepalive: Duration,

    /// Events committed while a subscriber's writes wait, before the
    /// subscriber is sent `lagged` and closed (for tests).
    #[arg(long, env = "INLET_STREAM_BUFFER_EVENTS", default_value_t = store::live::DEFAULT_BUFFER_EVENTS, hide = true)]
    pub stream_buffer_events: u64,

    /// Request line plus headers, in bytes (over: 431, or 414 for the target).
    #[arg(long, env = "INLET_MAX_HEAD", default_value_t = Limits::default().max_head)]
    pub max_head: usize,

    /// Request body, in bytes (over: 413).
    #[arg(long, env = "INLET_MAX_BODY", default_value_t = Limits::default().max_body)]
    pub max_body: usize,

    /// One event, in bytes (over: 413).
    #[arg(long, env = "INLET_MAX_EVENT_BYTES", default_value_t = ParseLimits::default().max_event_bytes)]
    pub max_event_bytes: usize,

    /// GET /events: event JSON in one page, in bytes. A page stops before
    /// the event that would pass it (`next_after` says where) and holds at
    /// least one event, however large.
    #[arg(long, env = "INLET_MAX_PAGE_BYTES", default_value_t = store::DEFAULT_PAGE_BYTES)]
    pub max_page_bytes: usize,

    /// A request body with its Content-Encoding undone, in bytes, counted
    /// while decoding (over: 413). --max-body stays the size on the wire.
    #[arg(long, env = "INLET_MAX_DECODED_BODY", default_value_t = ParseLimits::default().max_decoded_body)]
    pub max_decoded_body: usize,

    /// Events in one request (over: 413).
    #[arg(long, env = "INLET_MAX_BATCH", default_value_t = ParseLimits::default().max_batch)]
    pub max_batch: usize,

    /// Total time for a request head, from accept (first request) or from its
    /// first byte (later requests); then 408 and close. E.g. 10s, 500ms, 2m.
    #[arg(long, env = "INLET_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// Total time for a request body once its head is complete; then 408.
    #[arg(long, env = "INLET_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// A keep-alive connection idle this long between requests is closed.
    #[arg(long, env = "INLET_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// On SIGINT/SIGTERM, how long requests in flight may take to finish.
    #[arg(long, env = "INLET_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Serve HTTPS with this PEM certificate chain (the server's certificate
    /// first); needs --tls-key. SIGHUP reloads both files.
    #[arg(long, env = "INLET_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "INLET_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Require client certificates signed by this PEM CA (mTLS); needs
    /// --tls-cert. Read once, at start.
    #[arg(long, env = "INLET_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// JSON Schemas of events' data: DIR/<type>.json holds the schema of
    /// events of that type (file name percent-decoded), DIR/index.toml
    /// optionally sets a mode per type (enforce, warn, off). Compiled at
    /// start (a schema that does not compile stops the server) and on
    /// SIGHUP (a failed reload keeps the schemas in use). See docs/schemas.md.
    #[arg(long, env = "INLET_SCHEMAS")]
    pub schemas: Option<PathBuf>,

    /// With --schemas: events whose type has no schema are accepted
    /// (allow) or refused with 422 (reject).
    #[arg(long, env = "INLET_UNKNOWN_TYPES", value_enum, default_value = "allow")]
    pub unknown_types: UnknownTypes,

    /// Keep each refused event (schema violations, and invalid envelopes
    /// whose JSON parsed) with its errors, readable with GET /rejected.
    /// Bounded by --retention and --max-rejected-bytes (jetstream: in the
    /// stream <stream>_REJECTED). See docs/schemas.md.
    #[arg(long, env = "INLET_KEEP_REJECTED")]
    pub keep_rejected: bool,

    /// With --keep-rejected: the rejected events kept use at most this many
    /// bytes; the oldest are dropped first to make room.
    #[arg(
        long,
        env = "INLET_MAX_REJECTED_BYTES",
        default_value_t = store::DEFAULT_MAX_REJECTED_BYTES,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_rejected_bytes: u64,

    /// Log line format on stderr (level from RUST_LOG).
    #[arg(long, env = "INLET_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// Subcommands beside running the server.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Tokens for --tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Write a consistent copy of the SQLite store to OUT while a server
    /// keeps serving from it (SQLite's online backup API).
    Backup(BackupArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// Directory of the store to copy (the server's --data-dir).
    #[arg(long, env = "INLET_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// The file to write; refused if it exists, unless --force.
    pub out: PathBuf,

    /// Replace OUT if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum TokenCommand {
    /// Print a new random secret (once) and the [[token]] entry to add.
    New(NewTokenArgs),
}

#[derive(Debug, Clone, Args)]
pub struct NewTokenArgs {
    /// The token's name (shown in logs, /stats, /metrics, stored events).
    #[arg(long)]
    pub name: String,

    /// Its scopes, comma-separated or repeated: write, read, metrics.
    #[arg(long = "scope", value_delimiter = ',', required = true, value_parser = parse_scope)]
    pub scopes: Vec<Scope>,
}

fn parse_scope(name: &str) -> Result<Scope, String> {
    Scope::parse(name).ok_or_else(|| format!("unknown scope {name:?} (expected write, read, metrics)"))
}

/// What the listener and connection tasks need from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct ServerSettings {
    pub limits: Limits,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown_timeout: Duration,
}

impl Config {
    /// The access policy: the tokens file, or anonymous where that is safe.
    /// Without `--tokens`, anonymous serving is allowed on a loopback
    /// address only, unless `--allow-anonymous` says it is meant; the error
    /// is one line, for the log and the terminal.
    pub fn auth(&self) -> Result<Auth, crate::StartError> {
        match &self.tokens {
            Some(path) => Ok(Auth::from_file(path, self.client_certs())?),
            None if self.listen.ip().is_loopback() || self.allow_anonymous => Ok(Auth::anonymous()),
            None => Err(crate::StartError::Refused(format!(
                "refusing to serve anonymously on {}, which is not a loopback address: anyone who can reach it could \
                 write and read events; give --tokens FILE (see `inlet-server token new`), or --allow-anonymous if \
                 that is really meant",
                self.listen
            ))),
        }
    }

    /// Whether client certificates are verified (`--tls-client-ca`), which
    /// token entries naming a certificate `subject` need.
    pub fn client_certs(&self) -> ClientCerts {
        match self.tls_client_ca {
            Some(_) => ClientCerts::Verified,
            None => ClientCerts::Off,
        }
    }

    pub fn server_settings(&self) -> ServerSettings {
        ServerSettings {
            limits: Limits { max_head: self.max_head, max_body: self.max_body },
            max_connections: self.max_connections,
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            idle_timeout: self.idle_timeout,
            shutdown_timeout: self.shutdown_timeout,
        }
    }

    /// The TLS files, if the server speaks HTTPS.
    pub fn tls_files(&self) -> Option<crate::tls::TlsFiles> {
        Some(crate::tls::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    /// The schemas of `--schemas`, compiled; the error names the file and
    /// the reason. `--unknown-types` without `--schemas` is refused: it
    /// would silently do nothing.
    pub fn schemas(&self) -> Result<crate::schemas::Schemas, crate::StartError> {
        let unknown = match self.unknown_types {
            UnknownTypes::Allow => inlet_shared::schema::UnknownTypes::Allow,
            UnknownTypes::Reject => inlet_shared::schema::UnknownTypes::Reject,
        };
        match &self.schemas {
            Some(dir) => crate::schemas::Schemas::load(dir.clone(), unknown)
                .map_err(|e| crate::StartError::Refused(e.to_string())),
            None if self.unknown_types == UnknownTypes::Reject => {
                Err(crate::StartError::Refused("--unknown-types reject needs --schemas DIR".into()))
            }
            None => Ok(crate::schemas::Schemas::off()),
        }
    }

    pub fn parse_limits(&self) -> ParseLimits {
        ParseLimits {
            max_event_bytes: self.max_event_bytes,
            max_batch: self.max_batch,
            max_decoded_body: self.max_decoded_body,
        }
    }

    /// The store to open and its settings: the one place where store flags
    /// become store options.
    pub fn store_options(&self) -> store::Options {
        let keep_rejected = self
            .keep_rejected
            .then_some(store::RejectedOptions { max_bytes: self.max_rejected_bytes, retention: self.retention });
        match self.store {
            StoreKind::Memory => store::Options::Memory(store::MemoryOptions {
                retention: self.retention,
                dedupe_window: self.dedupe_window,
                keep_rejected,
            }),
            StoreKind::Sqlite => store::Options::Sqlite(store::SqliteOptions {
                dir: self.data_dir.clone(),
                sync: match self.sync {
                    SyncMode::Full => store::SyncMode::Full,
                    SyncMode::Normal => store::SyncMode::Normal,
                },
                queue: self.store_queue,
                max_bytes: self.max_store_bytes,
                readers: 4,
                retention: self.retention,
                when_full: match self.when_full {
                    WhenFull::Refuse => store::WhenFull::Refuse,
                    WhenFull::DropOldest => store::WhenFull::DropOldest,
                },
                dedupe_window: self.dedupe_window,
                keep_rejected,
            }),
            StoreKind::Jetstream => store::Options::Jetstream(store::JetStreamOptions {
                urls: self.nats_url.clone(),
                stream: self.stream.clone(),
                subject_prefix: self.subject_prefix.clone(),
                replicas: self.replicas,
                max_age: self.retention.unwrap_or(self.max_age),
                max_bytes: self.max_stream_bytes,
                duplicate_window: self.duplicate_window,
                ack_timeout: self.nats_ack_timeout,
                batches_in_flight: self.nats_batches_in_flight,
                group_in_flight: self.nats_group_in_flight,
                max_batch: self.max_batch,
                keep_rejected,
            }),
        }
    }
}

/// Lets `store::open(&config)` take the configuration as it is.
impl From<&Config> for store::OpenOptions {
    fn from(config: &Config) -> store::OpenOptions {
        let live = store::LiveSettings {
            // The blocking server answers one connection at a time: it cannot
            // hold a stream open.
            enabled: config.mode == Mode::Async,
            max_subscribers: config.max_subscribers,
            keepalive: config.stream_keepalive,
            buffer_events: config.stream_buffer_events.max(1),
        };
        store::OpenOptions { store: config.store_options(), live }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_flags_default_to_the_limits_defaults() {
        let config = Config::try_parse_from(["inlet-server"]).unwrap();
        let limits = config.server_settings().limits;
        assert_eq!(limits, Limits::default());
        assert_eq!(config.parse_limits(), ParseLimits::default());
        assert_eq!(config.max_page_bytes, 4 * 1024 * 1024);
        let config = Config::try_parse_from(["inlet-server", "--max-page-bytes", "1000"]).unwrap();
        assert_eq!(config.max_page_bytes, 1000);
    }

    /// Counts that become semaphore permits: up to tokio's maximum taken,
    /// one past it refused with a message (it panicked at start before).
    #[test]
    fn permit_counts_past_the_semaphores_maximum_are_refused() {
        let max = tokio::sync::Semaphore::MAX_PERMITS;
        for flag in ["--max-connections", "--nats-batches-in-flight", "--nats-group-in-flight"] {
            let at = Config::try_parse_from(["inlet-server", flag, &max.to_string()]);
            assert!(at.is_ok(), "{flag} {max}");
            let past = (max + 1).to_string();
            let err = Config::try_parse_from(["inlet-server", flag, &past]).unwrap_err().to_string();
            assert!(err.contains(&format!("{past} is more than the {max} allowed")), "{flag}: {err}");
            let err = Config::try_parse_from(["inlet-server", flag, "many"]).unwrap_err().to_string();
            assert!(err.contains("is not a count"), "{flag}: {err}");
        }
        let c = Config::try_parse_from(["inlet-server", "--max-connections", &max.to_string()]).unwrap();
        assert_eq!(c.max_connections, max);
    }

    #[test]
    fn store_options_follow_the_flags() {
        let config = Config::try_parse_from([
            "inlet-server",
            "--data-dir",
            "/d",
            "--sync",
            "normal",
            "--max-store-bytes",
            "1000",
        ])
        .unwrap();
        match config.store_options() {
            store::Options::Sqlite(o) => {
                assert_eq!(o.dir, PathBuf::from("/d"));
                assert_eq!(o.sync, store::SyncMode::Normal);
                assert_eq!(o.max_bytes, Some(1000));
                assert_eq!(o.queue, 4096);
            }
            other => panic!("expected sqlite, got {other:?}"),
        }
        let config = Config::try_parse_from(["inlet-server", "--store", "memory"]).unwrap();
        assert!(matches!(config.store_options(), store::Options::Memory(store::MemoryOptions { retention: None, .. })));
        assert!(matches!(
            config.store_options(),
            store::Options::Memory(store::MemoryOptions { keep_rejected: None, .. })
        ));
        let config = Config::try_parse_from([
            "inlet-server",
            "--store",
            "memory",
            "--keep-rejected",
            "--max-rejected-bytes",
            "5000",
            "--retention",
            "1h",
        ])
        .unwrap();
        let kept = store::RejectedOptions { max_bytes: 5000, retention: Some(std::time::Duration::from_secs(3600)) };
        assert!(matches!(
            config.store_options(),
            store::Options::Memory(store::MemoryOptions { keep_rejected: Some(k), .. }) if k == kept
        ));
        let config = Config::try_parse_from(["inlet-server", "--keep-rejected"]).unwrap();
        assert!(matches!(
            config.store_options(),
            store::Options::Sqlite(store::SqliteOptions { keep_rejected: Some(k), .. })
                if k.max_bytes == store::DEFAULT_MAX_REJECTED_BYTES && k.retention.is_none()
        ));
        assert!(Config::try_parse_from(["inlet-server", "--max-rejected-bytes", "0"]).is_err());
    }

    #[test]
    fn retention_flags() {
        let config = Config::try_parse_from(["inlet-server"]).unwrap();
        assert_eq!((config.retention, config.when_full), (None, WhenFull::Refuse), "keep forever, refuse");
        assert_eq!(config.dedupe_window, Duration::from_secs(24 * 3600));
        let config = Config::try_parse_from([
            "inlet-server",
            "--retention",
            "720h",
            "--when-full",
            "drop-oldest",
            "--max-store-bytes",
            "1000",
            "--dedupe-window",
            "0",
        ])
        .unwrap();
        match config.store_options() {
            store::Options::Sqlite(o) => {
                assert_eq!(o.retention, Some(Duration::from_secs(720 * 3600)));
                assert_eq!(o.when_full, store::WhenFull::DropOldest);
                assert_eq!(o.dedupe_window, Duration::ZERO);
            }
            other => panic!("expected sqlite, got {other:?}"),
        }
        // The smallest retention is one millisecond; zero is refused.
        let config = Config::try_parse_from(["inlet-server", "--retention", "1ms"]).unwrap();
        assert_eq!(config.retention, Some(Duration::from_millis(1)));
        let e = Config::try_parse_from(["inlet-server", "--retention", "0"]).unwrap_err().to_string();
        assert!(e.contains("leave --retention out to keep forever"), "{e}");
        assert!(Config::try_parse_from(["inlet-server", "--when-full", "drop-newest"]).is_err());
        // jetstream: the retention is the stream's max age; not both.
        let config = Config::try_parse_from(["inlet-server", "--store", "jetstream", "--retention", "2h"]).unwrap();
        match config.store_options() {
            store::Options::Jetstream(o) => assert_eq!(o.max_age, Duration::from_secs(7200)),
            other => panic!("expected jetstream, got {other:?}"),
        }
        let e = Config::try_parse_from(["inlet-server", "--retention", "2h", "--max-age", "1h"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn nats_ack_timeout_defaults_to_5s_and_is_bounded() {
        let ack = |args: &[&str]| {
            Config::try_parse_from([&["inlet-server", "--store", "jetstream"], args].concat()).map(|c| {
                match c.store_options() {
                    store::Options::Jetstream(o) => o.ack_timeout,
                    other => panic!("expected jetstream, got {other:?}"),
                }
            })
        };
        assert_eq!(ack(&[]).unwrap(), Duration::from_secs(5));
        assert_eq!(ack(&["--nats-ack-timeout", "2s"]).unwrap(), Duration::from_secs(2));
        assert_eq!(ack(&["--nats-ack-timeout", "1.5"]).unwrap(), Duration::from_millis(1500));
        // The bounds: the smallest duration above zero, and 5 minutes.
        assert_eq!(ack(&["--nats-ack-timeout", "1ms"]).unwrap(), Duration::from_millis(1));
        assert_eq!(ack(&["--nats-ack-timeout", "5m"]).unwrap(), MAX_NATS_ACK_TIMEOUT);
        assert_eq!(ack(&["--nats-ack-timeout", "300s"]).unwrap(), Duration::from_secs(300));
        let zero = ack(&["--nats-ack-timeout", "0"]).unwrap_err();
        assert_eq!(zero.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(zero.to_string().contains("an ack timeout of 0 would refuse every write"), "{zero}");
        let over = ack(&["--nats-ack-timeout", "300.001s"]).unwrap_err();
        assert_eq!(over.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(over.to_string().contains("an ack timeout of 300.001s is over the most allowed, 300s"), "{over}");
        assert!(ack(&["--nats-ack-timeout", "5d"]).unwrap_err().to_string().contains("use ms, s, m or h"));
        assert!(ack(&["--nats-ack-timeout", "-1s"]).is_err());
    }

    #[test]
    fn tls_flags_go_together() {
        let config = Config::try_parse_from(["inlet-server"]).unwrap();
        assert_eq!(config.tls_files(), None);
        let config = Config::try_parse_from([
            "inlet-server",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-client-ca",
            "ca.pem",
        ])
        .unwrap();
        let files = config.tls_files().unwrap();
        assert_eq!((files.cert, files.key, files.client_ca), ("c.pem".into(), "k.pem".into(), Some("ca.pem".into())));
        for alone in [&["--tls-cert", "c.pem"][..], &["--tls-key", "k.pem"], &["--tls-client-ca", "ca.pem"]] {
            let args = std::iter::once("inlet-server").chain(alone.iter().copied());
            let e = Config::try_parse_from(args).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument, "{alone:?}");
        }
    }

    #[test]
    fn anonymous_only_on_loopback_unless_allowed() {
        let auth = |args: &[&str]| Config::try_parse_from([&["inlet-server"], args].concat()).unwrap().auth();
        assert!(auth(&[]).unwrap().is_anonymous());
        assert!(auth(&["--listen", "[::1]:8080"]).unwrap().is_anonymous());
        let refused = auth(&["--listen", "0.0.0.0:0"]).unwrap_err().to_string();
        assert!(refused.starts_with("refusing to serve anonymously on 0.0.0.0:0"), "{refused}");
        assert!(!refused.contains('\n'), "one line: {refused}");
        assert!(auth(&["--listen", "0.0.0.0:0", "--allow-anonymous"]).unwrap().is_anonymous());
    }

    #[test]
    fn backup_takes_a_data_dir_an_out_file_and_force() {
        let config = Config::try_parse_from(["inlet-server", "backup", "--data-dir", "/d", "/o.sqlite3"]).unwrap();
        match config.command {
            Some(Command::Backup(args)) => {
                assert_eq!(args.data_dir, PathBuf::from("/d"));
                assert_eq!(args.out, PathBuf::from("/o.sqlite3"));
                assert!(!args.force);
            }
            other => panic!("expected backup, got {other:?}"),
        }
        let forced = Config::try_parse_from(["inlet-server", "backup", "--force", "/o"]).unwrap();
        assert!(matches!(forced.command, Some(Command::Backup(BackupArgs { force: true, .. }))));
        assert!(Config::try_parse_from(["inlet-server", "backup"]).is_err(), "OUT is required");
    }

    #[test]
    fn token_new_is_a_subcommand_and_the_server_needs_none() {
        assert!(Config::try_parse_from(["inlet-server", "--store", "memory"]).unwrap().command.is_none());
        let config =
            Config::try_parse_from(["inlet-server", "token", "new", "--name", "shop", "--scope", "write,read"])
                .unwrap();
        match config.command {
            Some(Command::Token(TokenCommand::New(args))) => {
                assert_eq!(args.name, "shop");
                assert_eq!(args.scopes, [Scope::Write, Scope::Read]);
            }
            other => panic!("expected token new, got {other:?}"),
        }
        assert!(Config::try_parse_from(["inlet-server", "token", "new", "--name", "x", "--scope", "admin"]).is_err());
        assert!(Config::try_parse_from(["inlet-server", "token", "new", "--name", "x"]).is_err());
    }

    #[test]
    fn every_flag_has_an_env_var() {
        use clap::CommandFactory;
        for arg in Config::command().get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            let expected = format!("INLET_{}", id.to_uppercase());
            assert_eq!(env.as_deref(), Some(expected.as_str()), "flag --{id}");
        }
    }
}
