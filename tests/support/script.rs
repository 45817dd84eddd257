//! How a [`FakeDestination`](super::FakeDestination) answers: [`Script`]s of [`Reply`]s.

use super::destination::Received;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// One answer of the fake destination: a status with headers and body, after an optional
/// delay, or a reset (no answer at all).
#[derive(Clone, Debug)]
pub struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: Bytes,
    pub(crate) delay: Duration,
    pub(crate) reset: bool,
}

impl Reply {
    /// Answer `status` with an empty body. Panics on a status outside 100..=999.
    pub fn status(status: u16) -> Reply {
        let status = StatusCode::from_u16(status)
            .unwrap_or_else(|_| panic!("Reply::status({status}): not an HTTP status"));
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            delay: Duration::ZERO,
            reset: false,
        }
    }

    /// `200 OK` with an empty body.
    pub fn ok() -> Reply {
        Reply::status(200)
    }

    /// Waits `delay`, then answers `200 OK` (for another status: `Reply::status(s).delay(d)`).
    pub fn stall(delay: Duration) -> Reply {
        Reply::ok().delay(delay)
    }

    /// Answers nothing: HTTP/1 closes the connection, HTTP/2 resets the stream.
    pub fn reset() -> Reply {
        Reply {
            reset: true,
            ..Reply::ok()
        }
    }

    /// Adds a response header, e.g. `.header("retry-after", "2")`. Panics if invalid.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        let name = HeaderName::try_from(name)
            .unwrap_or_else(|e| panic!("Reply::header: bad name {name:?}: {e}"));
        let value = HeaderValue::try_from(value)
            .unwrap_or_else(|e| panic!("Reply::header: bad value {value:?}: {e}"));
        self.headers.push((name, value));
        self
    }

    /// Sets the response body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Reply {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and `content-type: application/json`.
    pub fn json(self, value: &serde_json::Value) -> Reply {
        self.header("content-type", "application/json")
            .body(value.to_string())
    }

    /// Waits `delay` after reading the request, before answering (or resetting).
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// Whether this reply resets instead of answering.
    pub fn is_reset(&self) -> bool {
        self.reset
    }

    /// The status this reply answers with (meaningless for a reset).
    pub fn status_code(&self) -> StatusCode {
        self.status
    }
}

impl From<u16> for Reply {
    fn from(status: u16) -> Reply {
        Reply::status(status)
    }
}

/// What a [`Script`] sees of one request when choosing its reply.
pub struct Call<'a> {
    /// The request, as recorded (its `status` is still `None`).
    pub request: &'a Received,
    /// 0-based position of this request among all requests to the destination.
    pub index: usize,
    /// 0-based position among the requests with the same `x-relay-id` (or, for requests
    /// without one, among those without one): attempt `index_for_id + 1` of a callback.
    pub index_for_id: usize,
}

type ScriptFn = dyn Fn(&Call<'_>) -> Reply + Send + Sync;

/// Chooses the [`Reply`] to each request. Cheap to clone.
#[derive(Clone)]
pub struct Script(Arc<ScriptFn>);

impl Script {
    /// Every request gets `status` with an empty body.
    pub fn always(status: u16) -> Script {
        Script::always_reply(Reply::status(status))
    }

    /// Every request gets `reply`.
    pub fn always_reply(reply: Reply) -> Script {
        Script::from_fn(move |_| reply.clone())
    }

    /// The k-th request carrying a given `x-relay-id` gets `replies[k]`; past the end the
    /// last reply repeats. So `[500, 500, 200]` fails the first two attempts of each callback.
    pub fn sequence(replies: Vec<Reply>) -> Script {
        let replies = non_empty(replies, "Script::sequence");
        Script::from_fn(move |call| pick(&replies, call.index_for_id))
    }

    /// The n-th request overall gets `replies[n]`, whatever its id; the last one repeats.
    pub fn overall(replies: Vec<Reply>) -> Script {
        let replies = non_empty(replies, "Script::overall");
        Script::from_fn(move |call| pick(&replies, call.index))
    }

    /// Any rule: `f` sees the request and its positions and returns the reply.
    pub fn from_fn(f: impl Fn(&Call<'_>) -> Reply + Send + Sync + 'static) -> Script {
        Script(Arc::new(f))
    }

    /// The reply for `call`.
    pub fn reply(&self, call: &Call<'_>) -> Reply {
        (self.0)(call)
    }
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Script(..)")
    }
}

fn non_empty(replies: Vec<Reply>, what: &str) -> Vec<Reply> {
    assert!(!replies.is_empty(), "{what}: needs at least one reply");
    replies
}

fn pick(replies: &[Reply], index: usize) -> Reply {
    replies[index.min(replies.len() - 1)].clone()
}
