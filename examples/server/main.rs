//! The umanage example server: user management over HTTP on the facade's public API.
//!
//! ```text
//! cargo run --example server                       # everything in memory on 127.0.0.1:8080
//! UMANAGE_SPRAY_KEY=$(openssl rand -base64 32) \
//! cargo run --example server --all-features -- \
//!     --redis-url redis://127.0.0.1:6379 \
//!     --database-url postgres://postgres@127.0.0.1:5432/umanage
//! ```
//!
//! See `examples/server/README.md` for the routes and a curl transcript.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod app;
mod config;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use umanage::core::{SharedClock, SystemClock};

const USAGE: &str =
    "usage: server [--config FILE] [--listen ADDR] [--redis-url URL] [--database-url URL]

  --config FILE        policies, limits, timeouts, proxies (env UMANAGE_CONFIG; see
                       examples/server/umanage.example.toml)
  --listen ADDR        address to listen on (env UMANAGE_LISTEN, default 127.0.0.1:8080)
  --redis-url URL      sessions and rate limits on Redis (env UMANAGE_REDIS_URL)
  --database-url URL   accounts, credentials and audit on Postgres (env UMANAGE_DATABASE_URL)

  UMANAGE_ADMIN_USERNAME / UMANAGE_ADMIN_PASSWORD (and UMANAGE_ADMIN_EMAIL) create the
  first admin when none exists. UMANAGE_AUDIT_CHECKPOINT_KEY (hex, 32+ bytes) signs the
  audit checkpoints (wins over [audit] checkpoint_key). UMANAGE_LOG sets what is logged
  to stderr (a tracing EnvFilter directive such as `info` or `warn,umanage_audit=debug`;
  default `warn`). UMANAGE_SPRAY_KEY (base64 of 16-64 random bytes, the same on every
  instance) keys the spray detector's account digests: required with --redis-url, a
  random per-process key without.";

#[derive(Debug, Default)]
struct Args {
    config: Option<String>,
    redis_key_prefix: Option<String>,
    listen: Option<String>,
    redis_url: Option<String>,
    database_url: Option<String>,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = Args::default();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let slot = match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--config" => &mut args.config,
            "--listen" => &mut args.listen,
            "--redis-url" => &mut args.redis_url,
            "--database-url" => &mut args.database_url,
            other => return Err(format!("unknown argument {other:?}")),
        };
        let value = inline
            .or_else(|| it.next())
            .ok_or_else(|| format!("{name} needs a value"))?;
        *slot = Some(value);
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    args.config = args.config.or_else(|| env("UMANAGE_CONFIG"));
    args.listen = args.listen.or_else(|| env("UMANAGE_LISTEN"));
    args.redis_url = args.redis_url.or_else(|| env("UMANAGE_REDIS_URL"));
    args.database_url = args.database_url.or_else(|| env("UMANAGE_DATABASE_URL"));
    Ok(Some(args))
}

#[cfg_attr(
    not(any(feature = "redis", feature = "postgres")),
    allow(clippy::unused_async)
)]
async fn stores(args: &Args, clock: &SharedClock) -> Result<app::Stores, String> {
    #[allow(unused_mut)]
    let mut stores = app::Stores::memory(clock);
    // The spray detector's account-digest key: a secret, so from the environment only
    // (never the config file or a flag, which end up in process listings and backups).
    if let Some(text) = std::env::var("UMANAGE_SPRAY_KEY")
        .ok()
        .filter(|v| !v.is_empty())
    {
        let key = umanage::password::spray::SprayKey::from_base64(&text)
            .map_err(|e| format!("UMANAGE_SPRAY_KEY: {e}"))?;
        stores = stores.with_spray_key(key);
    }
    if let Some(url) = &args.redis_url {
        #[cfg(feature = "redis")]
        {
            let conn = umanage::core::redis::RedisConfig::builder(url.as_str())
                .key_prefix(args.redis_key_prefix.as_deref().unwrap_or("umanage"))
                .build()
                .map_err(|e| format!("redis config: {e}"))?
                .connect()
                .await
                .map_err(|e| format!("redis: {e}"))?;
            stores = stores.with_redis(&conn);
        }
        #[cfg(not(feature = "redis"))]
        {
            let _ = url;
            return Err("--redis-url needs the `redis` feature (run with --all-features)".into());
        }
    }
    if let Some(url) = &args.database_url {
        #[cfg(feature = "postgres")]
        {
            let pool = umanage::core::postgres::PgConfig::builder(url.as_str())
                .build()
                .map_err(|e| format!("postgres config: {e}"))?
                .connect()
                .await
                .map_err(|e| format!("postgres: {e}"))?;
            stores = stores
                .with_postgres(pool)
                .await
                .map_err(|e| format!("postgres migrations: {e}"))?;
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = url;
            return Err(
                "--database-url needs the `postgres` feature (run with --all-features)".into(),
            );
        }
    }
    Ok(stores)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    eprintln!("shutting down: finishing requests");
}

async fn run(mut args: Args) -> Result<(), String> {
    let cfg = match &args.config {
        Some(path) => config::ServerConfig::load(path)?,
        None => config::ServerConfig::default(),
    };
    // Flags and environment win over the file.
    args.listen = args.listen.or_else(|| cfg.listen.clone());
    args.redis_url = args.redis_url.or_else(|| cfg.redis_url.clone());
    args.database_url = args.database_url.or_else(|| cfg.database_url.clone());
    args.redis_key_prefix.clone_from(&cfg.redis_key_prefix);
    let mut cfg = cfg;
    if let Some(key) = std::env::var("UMANAGE_AUDIT_CHECKPOINT_KEY")
        .ok()
        .filter(|v| !v.is_empty())
    {
        cfg.audit.checkpoint_key = Some(config::SecretText(key));
    }
    let settings = app::Settings::from_config(&cfg)?;
    if !settings.audit.key_configured {
        let mode = if args.database_url.is_some() {
            "the audit trail is on Postgres: configure a key"
        } else {
            "fine for the in-memory trail"
        };
        eprintln!(
            "warning: no audit checkpoint key ([audit] checkpoint_key or \
             UMANAGE_AUDIT_CHECKPOINT_KEY): using a random one, so checkpoints written now \
             will not verify after a restart ({mode})"
        );
    }
    let listen: SocketAddr = args
        .listen
        .as_deref()
        .unwrap_or("127.0.0.1:8080")
        .parse()
        .map_err(|e| format!("--listen: {e}"))?;
    let clock: SharedClock = Arc::new(SystemClock);
    let stores = stores(&args, &clock).await?;
    let built = app::build(settings, stores, clock)?;
    if let (Ok(user), Ok(password)) = (
        std::env::var("UMANAGE_ADMIN_USERNAME"),
        std::env::var("UMANAGE_ADMIN_PASSWORD"),
    ) {
        let email = std::env::var("UMANAGE_ADMIN_EMAIL")
            .unwrap_or_else(|_| format!("{user}@localhost.localdomain"));
        if app::bootstrap_admin(&built.state, &user, &email, &password).await? {
            println!("created the first admin {user:?}");
        }
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("bind {listen}: {e}"))?;
    println!("umanage server listening on http://{listen}");
    axum::serve(
        listener,
        built
            .router
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .map_err(|e| format!("server: {e}"))?;
    let stats = built.audit.finish().await?;
    println!("audit flushed: {stats}");
    Ok(())
}

/// Sends the SDK's and the server's `tracing` events to stderr, filtered by `UMANAGE_LOG`
/// (default `warn`: failed background work such as an audit checkpoint or a delivery retry
/// shows up, per-request events do not). The SDK never puts secrets in its events.
fn init_logging() -> Result<(), String> {
    let filter = match std::env::var("UMANAGE_LOG") {
        Ok(v) if !v.trim().is_empty() => tracing_subscriber::EnvFilter::try_new(v.trim())
            .map_err(|e| format!("UMANAGE_LOG: {e}"))?,
        _ => tracing_subscriber::EnvFilter::new("warn"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init()
        .map_err(|e| format!("logging: {e}"))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_logging() {
        eprintln!("{e}\n\n{USAGE}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
