//! How the commands print for people: aligned tables, local times, short
//! ids, bodies pretty-printed when they are JSON, and a progress bar.

use std::io::{self, IsTerminal, Write};

use crate::clock;
use crate::inspect::{CallbackView, DetailView, RejectedView};

/// How much of an error a table cell shows.
const CELL_ERROR: usize = 40;

/// Prints callbacks as a table with a header row.
pub fn callback_table(out: &mut dyn Write, callbacks: &[CallbackView]) -> io::Result<()> {
    let mut rows = vec![
        [
            "ID", "RECEIVED", "ROUTE", "TASK", "STATE", "ATTEMPTS", "LAST",
        ]
        .map(String::from),
    ];
    for c in callbacks {
        rows.push([
            c.short_id.clone(),
            clock::local(c.received_at_ms),
            c.route.clone(),
            c.task_id.clone().unwrap_or_else(|| "-".into()),
            c.state.clone(),
            c.attempts.to_string(),
            last_outcome(c.last_status, c.last_error.as_deref()),
        ]);
    }
    table(out, &rows)
}

/// Prints rejected requests as a table with a header row.
pub fn rejected_table(out: &mut dyn Write, rejected: &[RejectedView]) -> io::Result<()> {
    let mut rows =
        vec![["TIME", "ROUTE", "PEER", "STATUS", "REASON", "DETAIL/PATH"].map(String::from)];
    for r in rejected {
        let request = format!("{} {}", r.method, r.path_and_query);
        let what = match r.detail.as_str() {
            "" => request,
            detail => format!("{detail} ({request})"),
        };
        rows.push([
            clock::local(r.received_at_ms),
            r.route.clone(),
            r.peer.clone(),
            r.status.to_string(),
            r.reason.clone(),
            what,
        ]);
    }
    table(out, &rows)
}

/// Prints rows with every column padded to its widest cell.
pub fn table<const N: usize>(out: &mut dyn Write, rows: &[[String; N]]) -> io::Result<()> {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let pad = width - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// A status, or the start of an error, or `-` when nothing was tried.
pub fn last_outcome(status: Option<u16>, error: Option<&str>) -> String {
    match (status, error) {
        (Some(status), _) => status.to_string(),
        (None, Some(error)) => shorten(error, CELL_ERROR),
        (None, None) => "-".into(),
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max - 1).collect();
    format!("{head}…")
}

/// Prints one callback in full.
pub fn detail(out: &mut dyn Write, d: &DetailView) -> io::Result<()> {
    let c = &d.callback;
    let scheme = if d.tls { "https" } else { "http" };
    writeln!(out, "id          {}", c.id)?;
    writeln!(
        out,
        "received    {} ({})",
        clock::local(c.received_at_ms),
        c.received_at
    )?;
    writeln!(
        out,
        "route       {}  {} {}",
        c.route, d.method, d.path_and_query
    )?;
    writeln!(out, "task        {}", c.task_id.as_deref().unwrap_or("-"))?;
    writeln!(out, "peer        {} over {scheme}", d.peer)?;
    writeln!(out, "state       {}, {} attempts", c.state, c.attempts)?;
    let kind = d.content_type.as_deref().unwrap_or("no content type");
    writeln!(out, "body        {} bytes, {kind}", d.body_bytes)?;
    writeln!(out, "headers")?;
    for h in &d.headers {
        writeln!(out, "  {}: {}", h.name, h.value)?;
    }
    writeln!(out, "deliveries")?;
    for delivery in &d.deliveries {
        let replay = if delivery.replay { " (replay)" } else { "" };
        writeln!(
            out,
            "  #{} {} {}{replay}",
            delivery.seq, delivery.url, delivery.state
        )?;
        if let Some(next) = &delivery.next_attempt_at {
            writeln!(out, "     next attempt at {next}")?;
        }
        let mut rows = Vec::new();
        for a in &delivery.attempts {
            rows.push([
                format!("     {}", a.number),
                clock::local(a.started_at_ms),
                latency_ms(a.latency_ms),
                outcome(a.status, a.error.as_deref()),
            ]);
        }
        table(out, &rows)?;
    }
    if !d.sent.is_empty() {
        writeln!(out, "sent by replay --to")?;
        for s in &d.sent {
            let changed = if s.modified {
                " (changed headers or body)"
            } else {
                ""
            };
            let result = outcome(s.status, s.error.as_deref());
            let took = latency_ms(s.latency_ms);
            writeln!(
                out,
                "  {} {} {}  {result}  {took}{changed}",
                s.number, s.started_at, s.url
            )?;
        }
    }
    Ok(())
}

/// A status or the whole error.
pub fn outcome(status: Option<u16>, error: Option<&str>) -> String {
    match (status, error) {
        (Some(status), _) => status.to_string(),
        (None, Some(error)) => format!("error: {error}"),
        (None, None) => "-".into(),
    }
}

/// A latency given in ms, for people.
pub fn latency_ms(ms: f64) -> String {
    let micros = (ms * 1000.0).max(0.0) as u64;
    clock::latency(std::time::Duration::from_micros(micros))
}

/// Prints a body: pretty JSON when it is JSON, else the bytes as they are.
pub fn body(out: &mut dyn Write, body: &[u8]) -> io::Result<()> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(json) => {
            let pretty = serde_json::to_string_pretty(&json).expect("a parsed value prints");
            writeln!(out, "{pretty}")
        }
        Err(_) => out.write_all(body),
    }
}

/// A progress bar on standard error, drawn only when it is a terminal.
pub struct Progress {
    total: usize,
    done: usize,
    visible: bool,
}

impl Progress {
    /// A bar for `total` steps; hidden for a single step.
    pub fn new(total: usize) -> Progress {
        Progress {
            total,
            done: 0,
            visible: total > 1 && io::stderr().is_terminal(),
        }
    }

    /// Clears the bar so a line can be printed above it.
    pub fn clear(&self) {
        if self.visible {
            eprint!("\r\x1b[2K");
        }
    }

    /// Counts a step and redraws.
    pub fn step(&mut self) {
        self.done += 1;
        if self.visible {
            let width = 30;
            let filled = width * self.done / self.total.max(1);
            let bar = format!("{}{}", "#".repeat(filled), ".".repeat(width - filled));
            eprint!("\r[{bar}] {}/{}", self.done, self.total);
            if self.done == self.total {
                eprintln!();
            }
        }
    }
}
