//! `tail`: follows a running relay's live events, one line per event.

use std::process::ExitCode;

use clap::Args;
use http::Method;
use http_body_util::BodyExt;

use super::remote::{Probe, encode};
use super::{CliError, Common, backend::admin_client};
use crate::clock;
use crate::events::Event;

/// `tail`: follow callbacks and attempts as they happen.
#[derive(Args, Debug)]
pub struct TailArgs {
    #[command(flatten)]
    pub common: Common,
    /// Only events of this route.
    #[arg(long)]
    pub route: Option<String>,
    /// Print each event's JSON instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

/// `tail`. Runs until the relay stops or the command is interrupted.
pub async fn run(args: TailArgs) -> Result<ExitCode, CliError> {
    let config = args.common.load()?;
    let client = admin_client(&config, args.common.admin.as_deref())
        .ok_or_else(|| CliError::usage("the admin port is 0 in the config; pass --admin"))?;
    if let Probe::Down(reason) = client.probe().await? {
        let message = format!(
            "tail follows a running relay, and none answers at {} ({reason})",
            client.base()
        );
        return Err(CliError::failed(message));
    }
    let path = match &args.route {
        Some(route) => format!("/v1/events?route={}", encode(route)),
        None => "/v1/events".to_string(),
    };
    let mut body = client.call(Method::GET, &path, None).await?.into_body();
    eprintln!(
        "following events from {} (interrupt to stop)",
        client.base()
    );

    let mut pending = String::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CliError::failed(format!("the event stream broke: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.push_str(&String::from_utf8_lossy(&data));
        while let Some(end) = pending.find("\n\n") {
            let block: String = pending.drain(..end + 2).collect();
            print_block(&block, args.json);
        }
    }
    Err(CliError::failed("the relay closed the event stream"))
}

/// Prints one server-sent event block; comments print nothing.
fn print_block(block: &str, json: bool) {
    let data: Vec<&str> = block
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    if data.is_empty() {
        return;
    }
    let data = data.join("\n");
    if json {
        println!("{data}");
        return;
    }
    match serde_json::from_str::<Event>(&data) {
        Ok(event) => println!("{}", line(&event)),
        Err(_) => println!("{data}"),
    }
}

fn line(event: &Event) -> String {
    let now = clock::local(crate::ingest::now_ms());
    let time = &now[11..];
    match event {
        Event::Accepted {
            id, route, task_id, ..
        } => {
            let task = task_id.as_deref().unwrap_or("-");
            format!("{time}  accepted  {id}  {route}  task {task}")
        }
        Event::Attempt {
            id,
            route,
            url,
            attempt,
            status,
            error,
            latency_ms,
            state,
            replay,
            ..
        } => {
            let outcome = super::output::outcome(*status, error.as_deref());
            let took = super::output::latency_ms(*latency_ms);
            let replay = if *replay { " replay" } else { "" };
            let what = format!("#{attempt}{replay} -> {url}");
            format!("{time}  attempt   {id}  {route}  {what}  {outcome}  {took}  {state}")
        }
        Event::Sent {
            id,
            route,
            url,
            status,
            error,
            latency_ms,
        } => {
            let outcome = super::output::outcome(*status, error.as_deref());
            let took = super::output::latency_ms(*latency_ms);
            format!("{time}  sent      {id}  {route}  -> {url}  {outcome}  {took}")
        }
    }
}
