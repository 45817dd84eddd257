//! Why a request failed verification: a stable label for metrics and the
//! rejected-request log, and a message that names the header or parameter
//! at fault but never a secret, a presented value or a signature.

use std::time::Duration;

use http::HeaderName;

/// A request that failed verification.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A header the scheme reads is absent.
    #[error("missing {header} header")]
    MissingHeader {
        /// The absent header.
        header: HeaderName,
    },
    /// The query parameter that carries the token is absent.
    #[error("missing query parameter {param:?}")]
    MissingParam {
        /// The parameter's name.
        param: String,
    },
    /// The route's `{token}` path segment is absent or empty.
    #[error("missing {{token}} path segment")]
    MissingPathToken,
    /// A credential is present but cannot be read: bad base64 or hex, a
    /// header without its parts, a timestamp that is not a number.
    #[error("malformed {location}: {problem}")]
    Malformed {
        /// Where the credential is, like `x-hub-signature-256 header`.
        location: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A token, header or Basic credential that equals no configured secret.
    #[error("{location} matches no configured secret")]
    BadSecret {
        /// Where the credential is, like `query parameter "token"`.
        location: String,
    },
    /// No signature in the header is valid for the request under any
    /// configured secret.
    #[error("{header} signature does not match the request")]
    BadSignature {
        /// The header that carries the signature.
        header: HeaderName,
    },
    /// A correctly signed timestamp too far in the past or the future.
    #[error("{header} timestamp is more than {tolerance:?} away from the relay's clock")]
    StaleTimestamp {
        /// The header that carries the timestamp.
        header: HeaderName,
        /// The configured tolerance.
        tolerance: Duration,
    },
    /// The signature covers the task id, and the body has none.
    #[error("the signature covers the task id, and no task id was found in the body")]
    MissingTaskId,
}

impl Rejection {
    /// A short, stable snake_case label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::MissingHeader { .. } => "missing_header",
            Rejection::MissingParam { .. } => "missing_param",
            Rejection::MissingPathToken => "missing_token",
            Rejection::Malformed { .. } => "malformed",
            Rejection::BadSecret { .. } => "bad_secret",
            Rejection::BadSignature { .. } => "bad_signature",
            Rejection::StaleTimestamp { .. } => "stale_timestamp",
            Rejection::MissingTaskId => "missing_task_id",
        }
    }

    pub(super) fn malformed_header(header: &HeaderName, problem: &'static str) -> Rejection {
        Rejection::Malformed {
            location: format!("{header} header"),
            problem,
        }
    }
}
