//! Where a command gets its answers: a running relay's admin API, or the
//! journal opened directly when no relay runs on it. Both give the same
//! JSON shapes, so the commands do not care which.
//!
//! Both hide secrets unless asked to reveal them. Through the admin API
//! that takes the relay's token; from the journal it simply works, since
//! whoever can read the journal directory holds the secrets anyway.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;

use super::CliError;
use super::remote::{AdminClient, Probe, encode};
use crate::config::Config;
use crate::export::{self, ImportSummary};
use crate::inspect::{self, CallbackView, DetailView, FilterParams, ListView, RejectedList};
use crate::journal::{Journal, JournalError};
use crate::redact::{self, Redactor};
use crate::replay::{BulkReplayRequest, BulkReplayResult, ReplayRequest, ReplayResult, Replayer};

/// A command opens the journal with a small page cache: it reads little.
const COMMAND_CACHE: u64 = 8 * 1024 * 1024;

/// Where answers come from.
pub enum Backend {
    /// A running relay, through its admin API.
    Remote(AdminClient),
    /// The journal itself; no relay runs on it.
    Local {
        replayer: Replayer,
        /// Hides secrets in what is shown, unless revealed.
        redactor: Redactor,
    },
}

impl Backend {
    /// Asks the admin API first; when nothing answers, opens the journal.
    /// With `create`, a journal that does not exist yet is created (import).
    pub async fn connect(
        config: &Config,
        admin: Option<&str>,
        create: bool,
    ) -> Result<Backend, CliError> {
        let (client, down) = match admin_client(config, admin) {
            Some(client) => match client.probe().await? {
                Probe::Up => return Ok(Backend::Remote(client)),
                Probe::Down(reason) => (Some(client), reason),
            },
            None => (
                None,
                "its port is 0 in the config; pass --admin".to_string(),
            ),
        };

        let path = &config.journal.path;
        if !create && !path.exists() {
            let message = format!(
                "no journal at {} (has a relay run with this config?)",
                path.display()
            );
            return Err(CliError::failed(message));
        }
        let journal = match Journal::open(path, COMMAND_CACHE) {
            Ok(journal) => Arc::new(journal),
            Err(JournalError::Locked { path }) => {
                let at = client.as_ref().map_or("(unknown address)", |c| c.base());
                return Err(CliError::failed(format!(
                    "journal {} is locked by a running relay, and its admin api at {at} does \
                     not answer ({down})",
                    path.display()
                )));
            }
            Err(err) => return Err(CliError::failed(err.to_string())),
        };
        let replayer = Replayer::new(config, journal, None).map_err(CliError::failed)?;
        Ok(Backend::Local {
            replayer,
            redactor: redact::redactor_for(config),
        })
    }

    /// Whether a relay is running (answers come through its admin API).
    pub fn is_remote(&self) -> bool {
        matches!(self, Backend::Remote(_))
    }

    /// A page of callbacks, newest first.
    pub async fn list(
        &self,
        filter: &FilterParams,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ListView, CliError> {
        match self {
            Backend::Remote(client) => {
                let mut query = query_of(filter);
                query.push(("limit", limit.to_string()));
                if let Some(cursor) = cursor {
                    query.push(("cursor", cursor.to_string()));
                }
                client
                    .get(&format!("/v1/callbacks{}", query_string(&query)))
                    .await
            }
            Backend::Local { replayer, .. } => {
                let filter = filter.to_filter().map_err(CliError::usage)?;
                let cursor = cursor
                    .map(|c| {
                        c.parse()
                            .map_err(|_| CliError::usage(format!("bad cursor {c:?}")))
                    })
                    .transpose()?;
                inspect::list(replayer.journal(), &filter, cursor, limit).map_err(CliError::failed)
            }
        }
    }

    /// One callback in full, by id or unique prefix, secrets hidden unless
    /// `reveal`.
    pub async fn show(&self, id: &str, reveal: bool) -> Result<DetailView, CliError> {
        match self {
            Backend::Remote(client) => {
                let query = reveal_query(Vec::new(), reveal);
                let path = format!("/v1/callbacks/{}{}", encode(id), query_string(&query));
                client.get(&path).await
            }
            Backend::Local { replayer, redactor } => {
                let journal = replayer.journal();
                let id = journal.resolve(id).map_err(lookup_error)?;
                inspect::detail(journal, id, hidden(redactor, reveal))
                    .map_err(CliError::failed)?
                    .ok_or_else(|| CliError::failed(format!("no callback with id {id}")))
            }
        }
    }

    /// The rejected requests kept, newest first, secrets hidden unless
    /// `reveal`.
    pub async fn rejected(
        &self,
        route: Option<&str>,
        limit: usize,
        reveal: bool,
    ) -> Result<RejectedList, CliError> {
        match self {
            Backend::Remote(client) => {
                let mut query = vec![("limit", limit.to_string())];
                if let Some(route) = route {
                    query.push(("route", route.to_string()));
                }
                let query = reveal_query(query, reveal);
                client
                    .get(&format!("/v1/rejected{}", query_string(&query)))
                    .await
            }
            Backend::Local { replayer, redactor } => {
                let journal = replayer.journal();
                inspect::rejected(journal, route, limit, hidden(redactor, reveal))
                    .map_err(CliError::failed)
            }
        }
    }

    /// A callback's raw body.
    pub async fn body(&self, id: &str) -> Result<Bytes, CliError> {
        match self {
            Backend::Remote(client) => {
                let path = format!("/v1/callbacks/{}/body", encode(id));
                let response = client.call(Method::GET, &path, None).await?;
                super::remote::read_all(response).await
            }
            Backend::Local { replayer, .. } => {
                let journal = replayer.journal();
                let id = journal.resolve(id).map_err(lookup_error)?;
                journal.body(id).map_err(CliError::failed)
            }
        }
    }

    /// The callbacks a bulk replay would select, oldest first.
    pub async fn select(
        &self,
        ids: &[String],
        filter: &FilterParams,
    ) -> Result<Vec<CallbackView>, CliError> {
        match self {
            Backend::Remote(client) => {
                let request = BulkReplayRequest {
                    ids: ids.to_vec(),
                    filter: filter.clone(),
                    dry_run: true,
                    ..BulkReplayRequest::default()
                };
                let result: BulkReplayResult = client.post("/v1/replay", &request).await?;
                Ok(result.selected)
            }
            Backend::Local { replayer, .. } => {
                let journal = replayer.journal();
                let selected = replayer.select(ids, filter).map_err(|e| match e {
                    crate::replay::SelectError::Lookup(e) => lookup_error(e),
                    crate::replay::SelectError::Filter(m) => CliError::usage(m),
                    crate::replay::SelectError::Journal(e) => CliError::failed(e),
                })?;
                let mut views = Vec::with_capacity(selected.len());
                for id in selected {
                    if let Some(summary) = journal.summary(id).map_err(CliError::failed)? {
                        views.push(
                            inspect::callback_view(journal, &summary).map_err(CliError::failed)?,
                        );
                    }
                }
                Ok(views)
            }
        }
    }

    /// Replays one callback.
    pub async fn replay(
        &self,
        id: &str,
        request: &ReplayRequest,
    ) -> Result<ReplayResult, CliError> {
        match self {
            Backend::Remote(client) => {
                client
                    .post(&format!("/v1/callbacks/{}/replay", encode(id)), request)
                    .await
            }
            Backend::Local { replayer, .. } => {
                let journal = replayer.journal();
                let id = journal.resolve(id).map_err(lookup_error)?;
                replayer.replay(id, request).await.map_err(|e| match e {
                    crate::replay::ReplayError::Lookup(e) => lookup_error(e),
                    crate::replay::ReplayError::Journal(e) => CliError::failed(e),
                    crate::replay::ReplayError::NoRoute { .. } => CliError::failed(e),
                    other => CliError::usage(other),
                })
            }
        }
    }

    /// Writes the matching callbacks as JSON Lines, secrets hidden unless
    /// `reveal`; returns how many.
    pub async fn export(
        &self,
        filter: &FilterParams,
        reveal: bool,
        out: &mut dyn Write,
    ) -> Result<usize, CliError> {
        let written = |e: std::io::Error| CliError::failed(format!("cannot write the export: {e}"));
        match self {
            Backend::Remote(client) => {
                let query = reveal_query(query_of(filter), reveal);
                let path = format!("/v1/export{}", query_string(&query));
                let mut body = client.call(Method::GET, &path, None).await?.into_body();
                let mut lines = 0;
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| {
                        CliError::failed(format!("the export stopped before its end: {e}"))
                    })?;
                    if let Ok(data) = frame.into_data() {
                        lines += data.iter().filter(|b| **b == b'\n').count();
                        out.write_all(&data).map_err(written)?;
                    }
                }
                Ok(lines)
            }
            Backend::Local { replayer, redactor } => {
                let journal = replayer.journal();
                let filter = filter.to_filter().map_err(CliError::usage)?;
                let ids = export::select(journal, &filter).map_err(CliError::failed)?;
                let redact = hidden(redactor, reveal);
                let mut lines = 0;
                for id in ids {
                    let line = export::line(journal, id, redact).map_err(CliError::failed)?;
                    if let Some(line) = line {
                        writeln!(out, "{line}").map_err(written)?;
                        lines += 1;
                    }
                }
                Ok(lines)
            }
        }
    }

    /// Adds the callbacks of an export.
    pub async fn import(&self, text: String, requeue: bool) -> Result<ImportSummary, CliError> {
        match self {
            Backend::Remote(client) => {
                let path = format!("/v1/import?requeue={requeue}");
                let response = client
                    .call(Method::POST, &path, Some(Bytes::from(text)))
                    .await?;
                let bytes = super::remote::read_all(response).await?;
                serde_json::from_slice(&bytes).map_err(CliError::failed)
            }
            Backend::Local { replayer, .. } => {
                let destinations =
                    |route: &str| replayer.destinations(route).map(<[String]>::to_vec);
                let requeue = requeue.then_some(&destinations as export::RouteDestinations<'_>);
                export::import(replayer.journal(), &text, requeue)
                    .await
                    .map_err(|e| match e {
                        export::ImportError::Line { .. } => CliError::usage(e),
                        export::ImportError::Journal(e) => CliError::failed(e),
                    })
            }
        }
    }
}

/// The admin API client the config (or `--admin`) points at; `None` when
/// the configured port is 0 and no address was given.
pub fn admin_client(config: &Config, admin: Option<&str>) -> Option<AdminClient> {
    let token = config.admin.token.clone();
    match admin {
        Some(addr) => Some(AdminClient::new(addr, token)),
        None if config.admin.listen.port() == 0 => None,
        None => Some(AdminClient::new(&config.admin.listen.to_string(), token)),
    }
}

/// The redactor to apply: none when revealing.
fn hidden(redactor: &Redactor, reveal: bool) -> Option<&Redactor> {
    (!reveal).then_some(redactor)
}

/// Adds `reveal=true` to a query when revealing.
fn reveal_query(
    mut query: Vec<(&'static str, String)>,
    reveal: bool,
) -> Vec<(&'static str, String)> {
    if reveal {
        query.push(("reveal", "true".to_string()));
    }
    query
}

fn lookup_error(err: crate::journal::LookupError) -> CliError {
    use crate::journal::LookupError;
    match err {
        LookupError::NotFound(_) | LookupError::Journal(_) => CliError::failed(err),
        LookupError::Malformed(_) | LookupError::Ambiguous { .. } => CliError::usage(err),
    }
}

fn query_of(filter: &FilterParams) -> Vec<(&'static str, String)> {
    let fields = [
        ("route", &filter.route),
        ("task", &filter.task),
        ("state", &filter.state),
        ("since", &filter.since),
        ("until", &filter.until),
    ];
    fields
        .into_iter()
        .filter_map(|(name, value)| Some((name, value.clone()?)))
        .collect()
}

fn query_string(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let joined: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    format!("?{}", joined.join("&"))
}
