//! The schemes that compare a presented value with a shared secret: `token`
//! (path segment or query parameter), `header` and `basic`.
//!
//! Both sides are hashed with SHA-256 and the digests compared in constant
//! time, so neither the content nor the length of a secret shows in how long
//! a comparison takes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use ring::digest::{SHA256, digest};
use subtle::{Choice, ConstantTimeEq};

use super::{Presented, Rejection, TokenSource, single, single_text};

/// SHA-256 digests of the configured secrets.
pub(super) struct Digests(Vec<[u8; 32]>);

impl Digests {
    pub(super) fn new(secrets: &[Vec<u8>]) -> Digests {
        Digests(secrets.iter().map(|secret| sha256(secret)).collect())
    }

    /// Whether `presented` equals any secret. Every secret is compared, so
    /// the time taken does not tell which one matched.
    fn matches(&self, presented: &[u8]) -> bool {
        let presented = sha256(presented);
        let found = self.0.iter().fold(Choice::from(0), |found, secret| {
            found | secret.ct_eq(&presented)
        });
        found.into()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    digest(&SHA256, bytes)
        .as_ref()
        .try_into()
        .expect("a SHA-256 digest is 32 bytes")
}

pub(super) fn check_token(
    source: &TokenSource,
    digests: &Digests,
    request: &Presented<'_>,
) -> Result<(), Rejection> {
    let (location, encoded) = match source {
        TokenSource::Path => {
            let token = request.path_token.filter(|token| !token.is_empty());
            (
                "{token} path segment".to_owned(),
                token.ok_or(Rejection::MissingPathToken)?,
            )
        }
        TokenSource::Query(param) => {
            let location = format!("query parameter {param:?}");
            let value = query_value(request.query.unwrap_or(""), param, &location)?;
            let value = value.ok_or_else(|| Rejection::MissingParam {
                param: param.clone(),
            })?;
            (location, value)
        }
    };

    let token = crate::percent::decode_strict(encoded).ok_or_else(|| Rejection::Malformed {
        location: location.clone(),
        problem: "has an invalid percent escape",
    })?;
    if digests.matches(&token) {
        Ok(())
    } else {
        Err(Rejection::BadSecret { location })
    }
}

/// The still-encoded value of `param` in `query`. Parameter names are
/// unreserved characters (the config checks), so they match undecoded.
fn query_value<'q>(
    query: &'q str,
    param: &str,
    location: &str,
) -> Result<Option<&'q str>, Rejection> {
    let mut values = query
        .split('&')
        .filter_map(|pair| match pair.split_once('=') {
            Some((name, value)) => (name == param).then_some(value),
            None => (pair == param).then_some(""),
        });
    let value = values.next();
    if values.next().is_some() {
        return Err(Rejection::Malformed {
            location: location.to_owned(),
            problem: "appears more than once",
        });
    }
    Ok(value)
}

pub(super) fn check_header(
    name: &http::HeaderName,
    digests: &Digests,
    headers: &HeaderMap,
) -> Result<(), Rejection> {
    let value = single(headers, name)?;
    if digests.matches(value.as_bytes()) {
        Ok(())
    } else {
        Err(Rejection::BadSecret {
            location: format!("{name} header"),
        })
    }
}

/// `Authorization: Basic <base64 of user:password>`, the scheme word in any
/// case (RFC 9110 makes it case-insensitive).
pub(super) fn check_basic(digests: &Digests, headers: &HeaderMap) -> Result<(), Rejection> {
    let value = single_text(headers, &AUTHORIZATION)?;
    let malformed = |problem| Rejection::malformed_header(&AUTHORIZATION, problem);
    let (word, encoded) = value
        .split_once(' ')
        .ok_or_else(|| malformed("is not \"Basic <credentials>\""))?;
    if !word.eq_ignore_ascii_case("basic") {
        return Err(malformed("does not use the Basic scheme"));
    }
    let credentials = STANDARD
        .decode(encoded.trim())
        .map_err(|_| malformed("has credentials that are not valid base64"))?;
    if digests.matches(&credentials) {
        Ok(())
    } else {
        Err(Rejection::BadSecret {
            location: "authorization header".to_owned(),
        })
    }
}
