//! The `callback-relay` command: parses the command line, starts logging and
//! hands over to the library.
//!
//! Exit codes: 0 success; 1 the relay failed while running, or an
//! inspection command ran and something failed; 2 bad usage or a bad
//! configuration.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use callback_relay::cli;
use callback_relay::config::Config;
use clap::{Parser, Subcommand, ValueEnum};
use tracing::{error, warn};

/// The exit codes of the inspection commands, shown in their help.
const EXIT_CODES: &str = "Exit codes: 0 ok; 1 the operation ran and something failed (a replay \
got a 500, an id was not found, no relay answered); 2 bad usage or configuration.";

/// A durable relay for webhook callbacks: journal first, acknowledge,
/// forward with retries.
#[derive(Parser)]
#[command(version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 ok; 1 the relay failed while running, or a command \
ran and something failed (a replay got a 500, an id was not found, no relay answered); \
2 bad usage or configuration.\nLog filter: RUST_LOG (default: info)."
)]
struct Cli {
    /// How log lines look.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay: accept callbacks, journal them, forward them.
    Serve {
        /// The configuration file.
        #[arg(long, short, default_value = "config.toml")]
        config: PathBuf,
    },
    /// Validate the configuration and print each route with its destinations.
    Check {
        /// The configuration file.
        #[arg(long, short, default_value = "config.toml")]
        config: PathBuf,
    },
    /// List captured callbacks, newest first.
    #[command(after_help = EXIT_CODES)]
    List(cli::ListArgs),
    /// Show one callback with its headers, deliveries and attempts.
    #[command(after_help = EXIT_CODES)]
    Show(cli::ShowArgs),
    /// Send captured callbacks again: queued to the route's destinations,
    /// or once to a URL given with --to.
    #[command(after_help = EXIT_CODES)]
    Replay(cli::ReplayArgs),
    /// Follow callbacks and delivery attempts as they happen.
    #[command(after_help = EXIT_CODES)]
    Tail(cli::TailArgs),
    /// Write callbacks as JSON Lines, one callback per line.
    #[command(after_help = EXIT_CODES)]
    Export(cli::ExportArgs),
    /// Add callbacks from an export to the journal.
    #[command(after_help = EXIT_CODES)]
    Import(cli::ImportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Serve { config } => serve(&config),
        Command::List(args) => cli::run(cli::list(args)),
        Command::Show(args) => cli::run(cli::show(args)),
        Command::Replay(args) => cli::run(cli::replay::run(args)),
        Command::Tail(args) => cli::run(cli::tail::run(args)),
        Command::Export(args) => cli::run(cli::export(args)),
        Command::Import(args) => cli::run(cli::import(args)),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|err| {
        eprintln!("callback-relay: {err}");
        ExitCode::from(2)
    })
}

fn check(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let Err(err) = callback_relay::relay::preflight(&config) {
        eprintln!("callback-relay: {}: {err}", path.display());
        return ExitCode::from(2);
    }
    let tls = if config.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!("{}: ok", path.display());
    println!("listen {tls}://{}", config.server.listen);
    println!("admin  http://{}", config.admin.listen);
    println!("journal {}", config.journal.path.display());
    for route in config.routes.values() {
        let methods: Vec<&str> = route.methods.iter().map(|m| m.as_str()).collect();
        println!(
            "route {} {} [{}]",
            route.name,
            route.path,
            methods.join(", ")
        );
        for dest in &route.destinations {
            println!("  -> {}", dest.url);
        }
    }
    ExitCode::SUCCESS
}

fn serve(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("callback-relay: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        let listen = config.server.listen;
        let public = match callback_relay::listener::bind(listen) {
            Ok(listener) => listener,
            Err(err) => {
                error!(addr = %listen, error = %err, "cannot bind the public listener");
                return ExitCode::from(1);
            }
        };
        if config.server.tls.is_none() && !listen.ip().to_canonical().is_loopback() {
            warn!(addr = %listen, "public listener has no TLS and is not on loopback; \
                callbacks cross the network in clear text");
        }
        match callback_relay::relay::run(config, public, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                error!(error = %err, "relay failed");
                ExitCode::from(if err.is_config() { 2 } else { 1 })
            }
        }
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutdown signal received");
}

/// jemalloc: measured about a third less CPU per callback than the system
/// allocator under load (sled and hyper allocate from every thread).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A C string pointer that jemalloc reads once at start.
#[repr(transparent)]
pub struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a static, immutable, NUL-terminated string.
unsafe impl Sync for MallocConf {}

/// jemalloc's options: give freed pages back after a second instead of ten,
/// so resident memory follows the load down.
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: MallocConf =
    MallocConf(c"dirty_decay_ms:1000,muzzy_decay_ms:1000".as_ptr());
