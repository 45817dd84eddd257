//! Caller verification: owns the check that a callback comes from the
//! provider a route expects, before it is journaled.
//!
//! A route's `[routes.NAME.verify]` table ([`VerifyConfig`]) picks a scheme:
//! a shared secret in the URL (`token`), in a header (`header`) or as HTTP
//! Basic credentials (`basic`); an HMAC signature (`hmac`, configurable); or
//! a provider's own signature format (`github`, `stripe`,
//! `standard-webhooks`, `kie`). Every scheme takes several secrets at once,
//! so a key can be rotated without downtime: any one of them accepts.
//!
//! [`Verifier::check`] answers with a [`Rejection`] whose message names the
//! header or parameter at fault but never a secret, a presented value or a
//! signature. Every comparison with a secret is constant time.

mod config;
mod rejection;
mod secret;
mod signature;

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};

pub(crate) use self::config::RawVerify;
pub use self::config::{
    Algorithm, Encoding, HmacConfig, Scheme, Template, TimestampCheck, TokenSource, VerifyConfig,
};
pub use self::rejection::Rejection;

use self::secret::Digests;
use self::signature::Keys;

/// What a request presents to be verified. No `Debug`: it holds the very
/// credentials that must stay out of logs.
#[derive(Clone, Copy)]
pub struct Presented<'a> {
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The `{token}` path segment, when the route's path has one, as it
    /// appears in the request path (still percent-encoded).
    pub path_token: Option<&'a str>,
    /// The raw query string, without '?'.
    pub query: Option<&'a str>,
    /// The request body, exactly as received.
    pub body: &'a [u8],
    /// The task id the route found in the body.
    pub task_id: Option<&'a str>,
    /// The relay's clock, for signed timestamps.
    pub now: SystemTime,
}

/// Checks requests against one route's [`VerifyConfig`], with its keys
/// prepared once.
pub struct Verifier {
    scheme: Scheme,
    check: Check,
}

/// The prepared check of each scheme.
enum Check {
    Token(TokenSource, Digests),
    Header(HeaderName, Digests),
    Basic(Digests),
    Hmac(HmacConfig, Keys),
    Stripe(Duration, Keys),
    StandardWebhooks(Duration, Keys),
}

impl Verifier {
    /// Prepares the secrets of `config`: digests for the schemes that
    /// compare a secret, HMAC keys for the ones that check a signature.
    pub fn new(config: &VerifyConfig) -> Verifier {
        let secrets = config.secrets();
        let scheme = config.scheme().clone();
        let check = match &scheme {
            Scheme::Token(source) => Check::Token(source.clone(), Digests::new(secrets)),
            Scheme::Header(name) => Check::Header(name.clone(), Digests::new(secrets)),
            Scheme::Basic => Check::Basic(Digests::new(secrets)),
            Scheme::Stripe { tolerance } => Check::Stripe(*tolerance, Keys::sha256(secrets)),
            Scheme::StandardWebhooks { tolerance } => {
                Check::StandardWebhooks(*tolerance, Keys::sha256(secrets))
            }
            Scheme::Hmac(_) | Scheme::Github | Scheme::Kie { .. } => {
                let hmac = scheme
                    .as_hmac()
                    .expect("hmac, github and kie are single-header HMAC schemes")
                    .into_owned();
                let keys = Keys::new(hmac.algorithm, secrets);
                Check::Hmac(hmac, keys)
            }
        };
        Verifier { scheme, check }
    }

    /// Accepts the request if it carries a valid credential for any one of
    /// the configured secrets.
    pub fn check(&self, request: &Presented<'_>) -> Result<(), Rejection> {
        match &self.check {
            Check::Token(source, digests) => secret::check_token(source, digests, request),
            Check::Header(name, digests) => secret::check_header(name, digests, request.headers),
            Check::Basic(digests) => secret::check_basic(digests, request.headers),
            Check::Hmac(hmac, keys) => signature::check_hmac(hmac, keys, request),
            Check::Stripe(tolerance, keys) => signature::check_stripe(*tolerance, keys, request),
            Check::StandardWebhooks(tolerance, keys) => {
                signature::check_standard(*tolerance, keys, request)
            }
        }
    }

    /// What a caller must present on this route.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

/// The one value of a header the scheme reads. A repeated header is
/// malformed rather than tried value by value, so there is never a doubt
/// about which one was checked.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<&'h HeaderValue, Rejection> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Err(Rejection::MissingHeader {
            header: name.clone(),
        });
    };
    if values.next().is_some() {
        return Err(Rejection::malformed_header(name, "appears more than once"));
    }
    Ok(value)
}

/// The one value of a header, as text.
fn single_text<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<&'h str, Rejection> {
    single(headers, name)?
        .to_str()
        .map_err(|_| Rejection::malformed_header(name, "is not visible ASCII"))
}
