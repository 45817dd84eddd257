//! `GET /v1/events`: the live event stream as server-sent events.
//!
//! Each event is sent as `event: <kind>` and `data: <json>` (see
//! [`Event`]). The stream opens with a comment so a client knows it is
//! following; a comment every 15 s keeps idle proxies from closing it and
//! finds clients that left. A client that falls behind gets an `event:
//! lagged` with how many events it missed. The stream ends when the relay
//! shuts down.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response};
use http_body_util::BodyExt;
use http_body_util::channel::{Channel, Sender};
use tokio::sync::broadcast::error::RecvError;

use super::{Admin, Body, BoxError};
use crate::events::Event;

/// How often an idle stream sends a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Starts a stream of the events of `route` (every route when `None`).
pub(super) fn stream(admin: &Arc<Admin>, route: Option<String>) -> Response<Body> {
    let (tx, body) = Channel::<Bytes, BoxError>::new(32);
    let events = admin.dispatcher.events().subscribe();
    let stopping = admin.stopping.clone();
    tokio::spawn(follow(tx, events, stopping, route));

    let mut response = Response::new(body.boxed());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Forwards events to one client until it leaves or the relay stops.
async fn follow(
    mut tx: Sender<Bytes, BoxError>,
    mut events: tokio::sync::broadcast::Receiver<Event>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    route: Option<String>,
) {
    if tx
        .send_data(Bytes::from_static(b": following\n\n"))
        .await
        .is_err()
    {
        return;
    }
    loop {
        let frame = tokio::select! {
            received = events.recv() => match received {
                Ok(event) if route.as_ref().is_some_and(|r| r != event.route()) => continue,
                Ok(event) => frame(&event),
                Err(RecvError::Lagged(missed)) => {
                    format!("event: lagged\ndata: {{\"missed\":{missed}}}\n\n")
                }
                Err(RecvError::Closed) => return,
            },
            () = tokio::time::sleep(KEEP_ALIVE) => ": keep-alive\n\n".to_string(),
            changed = stopping.changed() => {
                if changed.is_err() || *stopping.borrow() {
                    return;
                }
                continue;
            }
        };
        if tx.send_data(Bytes::from(frame)).await.is_err() {
            return;
        }
    }
}

fn frame(event: &Event) -> String {
    let data = serde_json::to_string(event).expect("events are plain data");
    format!("event: {}\ndata: {data}\n\n", event.kind())
}
