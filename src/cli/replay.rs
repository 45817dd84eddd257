//! `replay`: sends selected callbacks again, queued through the retrying
//! pipeline or once to a target given on the command line.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::Args;

use super::output::{self, Progress};
use super::{Backend, CliError, Common, Filters};
use crate::inspect::CallbackView;
use crate::replay::{ReplayRequest, ReplayResult, ReplaySummary, parse_header};

/// How many lines of a target's answer are printed.
const ANSWER_LINES: usize = 5;

/// `replay`: send captured callbacks again.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub common: Common,
    /// Callbacks by id, or by a prefix only one has.
    pub ids: Vec<String>,
    #[command(flatten)]
    pub filters: Filters,
    /// Send each once, now, to this URL instead of queueing deliveries to
    /// the route's destinations; prints status, latency and the answer.
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// Set a header on what is sent ('Name: value'; repeatable; needs --to).
    #[arg(long = "header", value_name = "'K: V'", requires = "to")]
    pub headers: Vec<String>,
    /// Send this file's bytes as the body instead (needs --to).
    #[arg(long, value_name = "FILE", requires = "to")]
    pub body_file: Option<PathBuf>,
    /// List what would be replayed and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// At most this many replays per second, like 5/s or 5.
    #[arg(long, value_name = "N/s")]
    pub rate: Option<String>,
    /// Replay more than one callback without asking.
    #[arg(long, short)]
    pub yes: bool,
    /// One JSON object per replayed callback instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `replay`.
pub async fn run(args: ReplayArgs) -> Result<ExitCode, CliError> {
    let filter = args.filters.params()?;
    if args.ids.is_empty() && filter.is_empty() {
        let message = "name callbacks by id or select them with --task, --route, --state, --since";
        return Err(CliError::usage(message));
    }
    let request = request_of(&args)?;
    let pause = args.rate.as_deref().map(parse_rate).transpose()?;
    let (_, backend) = args.common.connect(false).await?;

    let selected = backend.select(&args.ids, &filter).await?;
    if selected.is_empty() {
        return Err(CliError::failed("no callback matches"));
    }
    let target = match &args.to {
        Some(url) => format!("send once to {url}"),
        None => "queue deliveries to each route's destinations".to_string(),
    };
    if args.dry_run {
        output::callback_table(&mut std::io::stdout().lock(), &selected)
            .map_err(CliError::failed)?;
        println!("dry run: would {target} for {} callbacks", selected.len());
        return Ok(ExitCode::SUCCESS);
    }
    if selected.len() > 1 && !args.yes {
        confirm(selected.len(), &target)?;
    }

    let summary = replay_all(&backend, &selected, &request, pause, args.json).await;
    if selected.len() > 1 || summary.failed > 0 {
        let ReplaySummary {
            sent,
            succeeded,
            failed,
            ..
        } = summary;
        // Without --to, success means queued: delivery comes later.
        let done = if args.to.is_some() {
            "succeeded"
        } else {
            "queued"
        };
        eprintln!("replayed {sent}: {succeeded} {done}, {failed} failed");
    }
    if !backend.is_remote() && args.to.is_none() && summary.succeeded > 0 {
        eprintln!("no relay is running: the queued deliveries go out when one next runs");
    }
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Replays each callback in turn, paced, printing each result.
async fn replay_all(
    backend: &Backend,
    selected: &[CallbackView],
    request: &ReplayRequest,
    pause: Option<Duration>,
    json: bool,
) -> ReplaySummary {
    let mut summary = ReplaySummary {
        selected: selected.len(),
        ..ReplaySummary::default()
    };
    let mut progress = Progress::new(selected.len());
    for (index, callback) in selected.iter().enumerate() {
        if let (Some(pause), true) = (pause, index > 0) {
            tokio::time::sleep(pause).await;
        }
        let result = match backend.replay(&callback.id, request).await {
            Ok(result) => result,
            Err(err) => ReplayResult {
                id: callback.id.clone(),
                route: callback.route.clone(),
                queued: Vec::new(),
                sent: None,
                error: Some(err.message),
            },
        };
        summary.add(&result);
        progress.clear();
        print_result(&callback.short_id, &result, json);
        progress.step();
    }
    summary
}

fn print_result(short_id: &str, result: &ReplayResult, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string(result).expect("results are plain data")
        );
        return;
    }
    if let Some(error) = &result.error {
        println!("{short_id}  failed: {error}");
    } else if let Some(sent) = &result.sent {
        let outcome = output::outcome(sent.status, sent.error.as_deref());
        println!(
            "{short_id}  -> {}  {outcome}  {}",
            sent.url,
            output::latency_ms(sent.latency_ms)
        );
        for line in sent.response_head.lines().take(ANSWER_LINES) {
            println!("    {line}");
        }
    } else {
        let urls: Vec<&str> = result.queued.iter().map(|q| q.url.as_str()).collect();
        println!(
            "{short_id}  queued {} deliveries: {}",
            urls.len(),
            urls.join(", ")
        );
    }
}

/// What to send, from --to, --header and --body-file.
fn request_of(args: &ReplayArgs) -> Result<ReplayRequest, CliError> {
    let headers = args
        .headers
        .iter()
        .map(|h| parse_header(h).map_err(|e| CliError::usage(format!("--header: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let body_base64 = match &args.body_file {
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
            Some(BASE64.encode(bytes))
        }
        None => None,
    };
    Ok(ReplayRequest {
        to: args.to.clone(),
        headers,
        body_base64,
    })
}

/// Reads `5/s` or `5` as the pause between two replays.
fn parse_rate(text: &str) -> Result<Duration, CliError> {
    let number = text.strip_suffix("/s").unwrap_or(text);
    match number.trim().parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(Duration::from_secs_f64(1.0 / rate)),
        _ => Err(CliError::usage(format!(
            "--rate: {text:?} is not a rate like 5/s"
        ))),
    }
}

/// Asks before replaying many callbacks, or refuses when nobody can answer.
fn confirm(count: usize, target: &str) -> Result<(), CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!(
            "{count} callbacks selected; pass --yes to replay them all \
             (standard input is not a terminal, so cannot ask)"
        )));
    }
    eprint!("{count} callbacks selected: {target}? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(CliError::failed)?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(CliError::failed("nothing replayed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_pauses() {
        assert_eq!(parse_rate("5/s").ok(), Some(Duration::from_millis(200)));
        assert_eq!(parse_rate("2").ok(), Some(Duration::from_millis(500)));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("fast").is_err());
    }
}
