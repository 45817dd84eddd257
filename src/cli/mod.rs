//! The inspection commands: `list`, `show`, `replay`, `tail`, `export` and
//! `import`.
//!
//! While `serve` runs it holds the journal's lock, so each command first
//! asks the admin API named by the config (or `--admin`); when nothing
//! answers it opens the journal itself. A journal that is locked while the
//! admin API is silent is reported as just that.
//!
//! Secrets in headers and paths are shown as `<redacted>` unless a command
//! is given `--reveal`.
//!
//! Exit codes: 0 ok; 1 the operation ran and something failed (a replay got
//! a 500, an id was not found, no relay answered); 2 bad usage or config.

mod backend;
mod output;
mod remote;
pub mod replay;
pub mod tail;

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::Config;
use crate::inspect::FilterParams;

pub use backend::Backend;
pub use replay::ReplayArgs;
pub use tail::TailArgs;

/// Why a command failed, and with which exit code.
#[derive(Debug)]
pub struct CliError {
    /// 1: the operation failed; 2: bad usage or config.
    pub code: u8,
    pub message: String,
}

impl CliError {
    /// The operation ran and failed (exit 1).
    pub fn failed(message: impl fmt::Display) -> CliError {
        CliError {
            code: 1,
            message: message.to_string(),
        }
    }

    /// Bad usage or configuration (exit 2).
    pub fn usage(message: impl fmt::Display) -> CliError {
        CliError {
            code: 2,
            message: message.to_string(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Options every inspection command takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// The configuration file: the journal's path and the admin address.
    #[arg(long, short, default_value = "config.toml")]
    pub config: PathBuf,
    /// The admin API to ask instead of `[admin] listen` (host:port or URL).
    #[arg(long, env = "CALLBACK_RELAY_ADMIN", value_name = "ADDR")]
    pub admin: Option<String>,
}

impl Common {
    fn load(&self) -> Result<Config, CliError> {
        Config::load(&self.config).map_err(CliError::usage)
    }

    async fn connect(&self, create: bool) -> Result<(Config, Backend), CliError> {
        let config = self.load()?;
        let backend = Backend::connect(&config, self.admin.as_deref(), create).await?;
        Ok((config, backend))
    }
}

/// Filters shared by `list`, `replay` and `export`.
#[derive(Args, Debug, Clone, Default)]
pub struct Filters {
    /// Only callbacks of this route.
    #[arg(long)]
    pub route: Option<String>,
    /// Only callbacks that carried this task id.
    #[arg(long)]
    pub task: Option<String>,
    /// Only callbacks in this state: pending, delivered, dead or stored.
    #[arg(long)]
    pub state: Option<String>,
    /// Received at or after: a duration back from now (2h, 30m, 7d), a date
    /// (2025-01-31) or a time (2025-01-31T14:05:09Z).
    #[arg(long)]
    pub since: Option<String>,
    /// Received before (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
}

impl Filters {
    /// The filters, checked here so bad values fail before any request.
    fn params(&self) -> Result<FilterParams, CliError> {
        let params = FilterParams {
            route: self.route.clone(),
            task: self.task.clone(),
            state: self.state.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
        };
        params.to_filter().map_err(CliError::usage)?;
        Ok(params)
    }
}

/// `list`: captured callbacks, newest first.
#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub filters: Filters,
    /// At most this many callbacks.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// List requests refused after matching a route (401, 403, 413, 429)
    /// instead of callbacks; only --route and --limit filter them.
    #[arg(long, conflicts_with_all = ["task", "state", "since", "until"])]
    pub rejected: bool,
    /// Show secrets in headers and paths instead of <redacted> (through a
    /// running relay, needs its [admin] token).
    #[arg(long)]
    pub reveal: bool,
}

/// `show`: one callback with its deliveries and attempts.
#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    pub common: Common,
    /// The callback's id, or a prefix only it has.
    pub id: String,
    /// Print the body only (pretty JSON when it is JSON).
    #[arg(long)]
    pub body: bool,
    /// The whole record as JSON.
    #[arg(long)]
    pub json: bool,
    /// Show secrets in headers and paths instead of <redacted> (through a
    /// running relay, needs its [admin] token).
    #[arg(long)]
    pub reveal: bool,
}

/// `export`: callbacks as JSON Lines.
#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub filters: Filters,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Keep secrets in headers and paths instead of <redacted>, for a
    /// byte-exact capture (through a running relay, needs its [admin] token).
    #[arg(long)]
    pub reveal: bool,
}

/// `import`: add exported callbacks to the journal.
#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    pub common: Common,
    /// The JSON Lines file written by export (`-` for standard input).
    pub file: PathBuf,
    /// Also queue a delivery of each to its route's configured destinations.
    #[arg(long)]
    pub requeue: bool,
}

/// Runs an async command on a small runtime and turns its result into an
/// exit code, printing the error once.
pub fn run<F>(command: F) -> ExitCode
where
    F: std::future::Future<Output = Result<ExitCode, CliError>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("callback-relay: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("callback-relay: {err}");
            ExitCode::from(err.code)
        }
    }
}

/// `list`.
pub async fn list(args: ListArgs) -> Result<ExitCode, CliError> {
    if args.rejected {
        return list_rejected(args).await;
    }
    let filter = args.filters.params()?;
    let (_, backend) = args.common.connect(false).await?;
    let page = backend.list(&filter, None, args.limit).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for callback in &page.callbacks {
            let line = serde_json::to_string(callback).expect("views are plain data");
            writeln!(out, "{line}").map_err(stdout_error)?;
        }
    } else {
        output::callback_table(&mut out, &page.callbacks).map_err(stdout_error)?;
        if page.next_cursor.is_some() {
            let limit = args.limit;
            eprintln!("(showing the newest {limit}; narrow the filters or raise --limit)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `list --rejected`.
async fn list_rejected(args: ListArgs) -> Result<ExitCode, CliError> {
    let (_, backend) = args.common.connect(false).await?;
    let route = args.filters.route.as_deref();
    let list = backend.rejected(route, args.limit, args.reveal).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for rejected in &list.rejected {
            let line = serde_json::to_string(rejected).expect("views are plain data");
            writeln!(out, "{line}").map_err(stdout_error)?;
        }
    } else {
        output::rejected_table(&mut out, &list.rejected).map_err(stdout_error)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `show`.
pub async fn show(args: ShowArgs) -> Result<ExitCode, CliError> {
    let (_, backend) = args.common.connect(false).await?;
    let mut out = std::io::stdout().lock();
    if args.body {
        let body = backend.body(&args.id).await?;
        output::body(&mut out, &body).map_err(stdout_error)?;
        return Ok(ExitCode::SUCCESS);
    }
    let detail = backend.show(&args.id, args.reveal).await?;
    if args.json {
        let text = serde_json::to_string_pretty(&detail).expect("views are plain data");
        writeln!(out, "{text}").map_err(stdout_error)?;
    } else {
        output::detail(&mut out, &detail).map_err(stdout_error)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `export`.
pub async fn export(args: ExportArgs) -> Result<ExitCode, CliError> {
    let filter = args.filters.params()?;
    let (_, backend) = args.common.connect(false).await?;
    match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| CliError::failed(format!("cannot create {}: {e}", path.display())))?;
            let mut writer = std::io::BufWriter::new(file);
            let count = backend.export(&filter, args.reveal, &mut writer).await?;
            writer
                .flush()
                .map_err(|e| CliError::failed(format!("{}: {e}", path.display())))?;
            eprintln!("exported {count} callbacks to {}", path.display());
        }
        None => {
            let mut out = std::io::stdout().lock();
            backend.export(&filter, args.reveal, &mut out).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `import`.
pub async fn import(args: ImportArgs) -> Result<ExitCode, CliError> {
    let text = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(&args.file)
    };
    let text =
        text.map_err(|e| CliError::usage(format!("cannot read {}: {e}", args.file.display())))?;
    let (_, backend) = args.common.connect(true).await?;
    let summary = backend.import(text, args.requeue).await?;
    println!(
        "imported {} callbacks ({} already present), queued {} deliveries",
        summary.added, summary.existing, summary.queued
    );
    if summary.redacted > 0 {
        println!(
            "{} of them had secrets hidden at export: they hold <redacted> in their place \
             (export with --reveal for a byte-exact capture)",
            summary.redacted
        );
    }
    if args.requeue && !backend.is_remote() && summary.queued > 0 {
        println!("the deliveries go out when a relay next runs on this journal");
    }
    Ok(ExitCode::SUCCESS)
}

fn stdout_error(err: std::io::Error) -> CliError {
    CliError::failed(format!("cannot write to standard output: {err}"))
}
