//! The `[routes.NAME.verify]` table: which scheme a route uses to check its
//! callers, with which secrets, parsed from TOML and validated.
//!
//! Secrets never appear in an error message or in `Debug` output; errors
//! name a secret by its index in `secrets`.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderName;
use serde::Deserialize;

use crate::config::{ConfigError, duration, invalid};

/// How far a signed timestamp may be from now unless `tolerance` says otherwise.
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The `{token}` path segment that carries the secret for scheme `token`.
const TOKEN_SEGMENT: &str = "{token}";

/// Signature headers of the presets, lower case as [`HeaderName`] keeps them.
pub(super) const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
pub(super) const STRIPE_SIGNATURE: &str = "stripe-signature";
pub(super) const WEBHOOK_ID: &str = "webhook-id";
pub(super) const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
pub(super) const WEBHOOK_SIGNATURE: &str = "webhook-signature";
pub(super) const KIE_SIGNATURE: &str = "x-webhook-signature";
pub(super) const KIE_TIMESTAMP: &str = "x-webhook-timestamp";
const AUTHORIZATION: &str = "authorization";

/// A route's caller verification, validated. `Debug` redacts the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyConfig {
    scheme: Scheme,
    /// Key material, one entry per configured secret, as the scheme uses it:
    /// the decoded key for `standard-webhooks`, the UTF-8 bytes otherwise.
    secrets: Vec<Vec<u8>>,
}

/// What a caller must present, per `scheme`. Holds no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `token`: the secret is in the URL.
    Token(TokenSource),
    /// `header`: the named header equals a secret.
    Header(HeaderName),
    /// `basic`: HTTP Basic credentials equal a `user:password` secret.
    Basic,
    /// `hmac`: one signature in one header, as configured.
    Hmac(HmacConfig),
    /// `github`: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    Github,
    /// `stripe`: `Stripe-Signature: t=<unix>,v1=<hex>...` over `{t}.{body}`.
    Stripe {
        /// How far `t` may be from now.
        tolerance: Duration,
    },
    /// `standard-webhooks`: `webhook-signature: v1,<base64> ...` over
    /// `{webhook-id}.{webhook-timestamp}.{body}`.
    StandardWebhooks {
        /// How far `webhook-timestamp` may be from now.
        tolerance: Duration,
    },
    /// `kie`: `X-Webhook-Signature: base64(HMAC-SHA256({task_id}.{timestamp}))`.
    Kie {
        /// How far `X-Webhook-Timestamp` may be from now.
        tolerance: Duration,
    },
}

/// Where scheme `token` finds the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// The route path's last segment, written `{token}` in the config.
    Path,
    /// The query parameter of this name.
    Query(String),
}

/// A single HMAC signature carried in one header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HmacConfig {
    /// The header that carries the signature.
    pub header: HeaderName,
    /// The hash under the HMAC.
    pub algorithm: Algorithm,
    /// How the signature is written in the header.
    pub encoding: Encoding,
    /// Text before the signature, like `sha256=`, stripped before decoding.
    pub prefix: Option<String>,
    /// What the provider signs.
    pub signed: Template,
    /// The signed timestamp, when the template uses `{timestamp}`.
    pub timestamp: Option<TimestampCheck>,
}

/// A unix-seconds timestamp header and how far it may be from now, in
/// either direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimestampCheck {
    /// The header that carries the timestamp.
    pub header: HeaderName,
    /// Largest accepted difference from the relay's clock.
    pub tolerance: Duration,
}

/// The hash under an HMAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA1, which some older providers still use.
    Sha1,
    /// HMAC-SHA256, the default.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// How a signature is written in its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Hex digits, either case (the default).
    Hex,
    /// Standard base64, padding optional.
    Base64,
}

/// What is signed: literal text and placeholders, like `{timestamp}.{body}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// One piece of a [`Template`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Body,
    Timestamp,
    TaskId,
}

impl VerifyConfig {
    /// What a caller must present.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// The key material of each secret, in config order.
    pub(super) fn secrets(&self) -> &[Vec<u8>] {
        &self.secrets
    }
}

impl fmt::Debug for VerifyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyConfig")
            .field("scheme", &self.scheme)
            .field("secrets", &vec!["<redacted>"; self.secrets.len()])
            .finish()
    }
}

impl Scheme {
    /// The scheme's name as written in the config.
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::Token(_) => "token",
            Scheme::Header(_) => "header",
            Scheme::Basic => "basic",
            Scheme::Hmac(_) => "hmac",
            Scheme::Github => "github",
            Scheme::Stripe { .. } => "stripe",
            Scheme::StandardWebhooks { .. } => "standard-webhooks",
            Scheme::Kie { .. } => "kie",
        }
    }

    /// Names of the headers that carry a secret or a signature, lower case.
    pub fn secret_headers(&self) -> Vec<&str> {
        match self {
            Scheme::Token(_) => Vec::new(),
            Scheme::Header(name) => vec![name.as_str()],
            Scheme::Basic => vec![AUTHORIZATION],
            Scheme::Hmac(hmac) => vec![hmac.header.as_str()],
            Scheme::Github => vec![GITHUB_SIGNATURE],
            Scheme::Stripe { .. } => vec![STRIPE_SIGNATURE],
            Scheme::StandardWebhooks { .. } => vec![WEBHOOK_SIGNATURE],
            Scheme::Kie { .. } => vec![KIE_SIGNATURE],
        }
    }

    /// The query parameter that carries the secret, if any.
    pub fn secret_param(&self) -> Option<&str> {
        match self {
            Scheme::Token(TokenSource::Query(param)) => Some(param),
            _ => None,
        }
    }

    /// Whether the route path's `{token}` segment carries the secret.
    pub fn secret_in_path(&self) -> bool {
        *self == Scheme::Token(TokenSource::Path)
    }

    /// The single-header HMAC this scheme amounts to, for the schemes that
    /// are one (`hmac`, `github`, `kie`).
    pub fn as_hmac(&self) -> Option<Cow<'_, HmacConfig>> {
        match self {
            Scheme::Hmac(hmac) => Some(Cow::Borrowed(hmac)),
            Scheme::Github => Some(Cow::Owned(HmacConfig {
                header: HeaderName::from_static(GITHUB_SIGNATURE),
                algorithm: Algorithm::Sha256,
                encoding: Encoding::Hex,
                prefix: Some("sha256=".to_owned()),
                signed: Template::body(),
                timestamp: None,
            })),
            Scheme::Kie { tolerance } => Some(Cow::Owned(HmacConfig {
                header: HeaderName::from_static(KIE_SIGNATURE),
                algorithm: Algorithm::Sha256,
                encoding: Encoding::Base64,
                prefix: None,
                signed: Template::kie(),
                timestamp: Some(TimestampCheck {
                    header: HeaderName::from_static(KIE_TIMESTAMP),
                    tolerance: *tolerance,
                }),
            })),
            _ => None,
        }
    }
}

impl Template {
    /// `{body}`: the request body alone.
    fn body() -> Template {
        Template {
            parts: vec![Part::Body],
        }
    }

    /// `{task_id}.{timestamp}`, what the kie preset signs.
    fn kie() -> Template {
        Template {
            parts: vec![Part::TaskId, Part::Literal(".".to_owned()), Part::Timestamp],
        }
    }

    /// Whether the template has a `{timestamp}` placeholder.
    pub fn uses_timestamp(&self) -> bool {
        self.parts.contains(&Part::Timestamp)
    }

    /// Whether the template has a `{task_id}` placeholder.
    pub fn uses_task_id(&self) -> bool {
        self.parts.contains(&Part::TaskId)
    }

    /// The bytes that were signed. Borrows the body when the template is
    /// `{body}` alone, so the common case copies nothing.
    pub(super) fn render<'a>(
        &self,
        body: &'a [u8],
        timestamp: &str,
        task_id: &str,
    ) -> Cow<'a, [u8]> {
        if self.parts == [Part::Body] {
            return Cow::Borrowed(body);
        }
        let mut signed = Vec::with_capacity(body.len() + 64);
        for part in &self.parts {
            match part {
                Part::Literal(text) => signed.extend_from_slice(text.as_bytes()),
                Part::Body => signed.extend_from_slice(body),
                Part::Timestamp => signed.extend_from_slice(timestamp.as_bytes()),
                Part::TaskId => signed.extend_from_slice(task_id.as_bytes()),
            }
        }
        Cow::Owned(signed)
    }

    /// Parses `{body}`, `{timestamp}` and `{task_id}` placeholders with
    /// literal text between them; a `{` always opens a placeholder.
    fn parse(key: &str, text: &str) -> Result<Template, ConfigError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let Some(close) = rest[open..].find('}').map(|at| open + at) else {
                let message = format!("{text:?} has a '{{' without a closing '}}'");
                return Err(invalid(key, message));
            };
            parts.push(placeholder(key, text, &rest[open + 1..close])?);
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }

        // A signature over neither the body nor the task id proves nothing
        // about the callback it came with.
        if !parts.iter().any(|p| matches!(p, Part::Body | Part::TaskId)) {
            let message = format!("{text:?} signs neither {{body}} nor {{task_id}}");
            return Err(invalid(key, message));
        }
        Ok(Template { parts })
    }
}

fn placeholder(key: &str, text: &str, name: &str) -> Result<Part, ConfigError> {
    match name {
        "body" => Ok(Part::Body),
        "timestamp" => Ok(Part::Timestamp),
        "task_id" => Ok(Part::TaskId),
        _ => Err(invalid(
            key,
            format!(
                "{text:?} has an unknown placeholder {{{name}}} \
                 (expected {{body}}, {{timestamp}} or {{task_id}})"
            ),
        )),
    }
}

// ---------------------------------------------------------------------------------------
// The table as written.

/// `[routes.NAME.verify]` as written. Every key but `scheme` is optional
/// here; which ones a scheme needs or allows is checked in
/// [`RawVerify::into_verify`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVerify {
    scheme: String,
    secrets: Option<Vec<String>>,
    param: Option<String>,
    header: Option<String>,
    algorithm: Option<String>,
    encoding: Option<String>,
    prefix: Option<String>,
    signed: Option<String>,
    timestamp_header: Option<String>,
    tolerance: Option<String>,
}

/// The scheme names, before the rest of the table is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Token,
    Header,
    Basic,
    Hmac,
    Github,
    Stripe,
    StandardWebhooks,
    Kie,
}

impl Kind {
    fn parse(key: &str, text: &str) -> Result<Kind, ConfigError> {
        Ok(match text {
            "token" => Kind::Token,
            "header" => Kind::Header,
            "basic" => Kind::Basic,
            "hmac" => Kind::Hmac,
            "github" => Kind::Github,
            "stripe" => Kind::Stripe,
            "standard-webhooks" => Kind::StandardWebhooks,
            "kie" => Kind::Kie,
            _ => {
                let message = format!(
                    "{text:?} is not a scheme (expected token, header, basic, hmac, github, \
                     stripe, standard-webhooks or kie)"
                );
                return Err(invalid(key, message));
            }
        })
    }

    /// The optional keys the scheme reads; `scheme` and `secrets` always.
    fn keys(self) -> &'static [&'static str] {
        match self {
            Kind::Token => &["param"],
            Kind::Header => &["header"],
            Kind::Basic | Kind::Github => &[],
            Kind::Hmac => &[
                "header",
                "algorithm",
                "encoding",
                "prefix",
                "signed",
                "timestamp_header",
                "tolerance",
            ],
            Kind::Stripe | Kind::StandardWebhooks | Kind::Kie => &["tolerance"],
        }
    }
}

impl RawVerify {
    /// Validates the table at dotted `key` (like `routes.wav.verify`) for a
    /// route whose configured path is `route_path`.
    pub(crate) fn into_verify(
        self,
        key: &str,
        route_path: &str,
    ) -> Result<VerifyConfig, ConfigError> {
        let kind = Kind::parse(&format!("{key}.scheme"), &self.scheme)?;
        self.reject_unused(key, kind)?;
        let path_token = path_has_token(key, route_path)?;
        if path_token && kind != Kind::Token {
            let message = format!(
                "scheme {:?} does not check the {TOKEN_SEGMENT} segment of route path \
                 {route_path:?} (use scheme \"token\")",
                self.scheme
            );
            return Err(invalid(format!("{key}.scheme"), message));
        }

        let secrets = secrets(&format!("{key}.secrets"), kind, self.secrets.as_deref())?;
        let scheme = self.into_scheme(key, kind, route_path, path_token)?;
        Ok(VerifyConfig { scheme, secrets })
    }

    /// Every optional key that is set, by name.
    fn present(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            ("param", self.param.is_some()),
            ("header", self.header.is_some()),
            ("algorithm", self.algorithm.is_some()),
            ("encoding", self.encoding.is_some()),
            ("prefix", self.prefix.is_some()),
            ("signed", self.signed.is_some()),
            ("timestamp_header", self.timestamp_header.is_some()),
            ("tolerance", self.tolerance.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
    }

    /// A key the scheme does not read is an error rather than silently
    /// ignored: a preset fixes its headers and algorithm itself.
    fn reject_unused(&self, key: &str, kind: Kind) -> Result<(), ConfigError> {
        match self.present().find(|name| !kind.keys().contains(name)) {
            Some(name) => Err(invalid(
                format!("{key}.{name}"),
                format!("{name} is not used by scheme {:?}", self.scheme),
            )),
            None => Ok(()),
        }
    }

    fn into_scheme(
        self,
        key: &str,
        kind: Kind,
        route_path: &str,
        path_token: bool,
    ) -> Result<Scheme, ConfigError> {
        let tolerance_key = format!("{key}.tolerance");
        let tolerance = tolerance_or_default(&tolerance_key, self.tolerance.as_deref());
        Ok(match kind {
            Kind::Token => Scheme::Token(token_source(key, self.param, route_path, path_token)?),
            Kind::Header => Scheme::Header(required_header(key, "header", self.header)?),
            Kind::Basic => Scheme::Basic,
            Kind::Hmac => Scheme::Hmac(self.into_hmac(key)?),
            Kind::Github => Scheme::Github,
            Kind::Stripe => Scheme::Stripe {
                tolerance: tolerance?,
            },
            Kind::StandardWebhooks => Scheme::StandardWebhooks {
                tolerance: tolerance?,
            },
            Kind::Kie => Scheme::Kie {
                tolerance: tolerance?,
            },
        })
    }

    fn into_hmac(self, key: &str) -> Result<HmacConfig, ConfigError> {
        let header = required_header(key, "header", self.header)?;
        let algorithm = algorithm(&format!("{key}.algorithm"), self.algorithm.as_deref())?;
        let encoding = encoding(&format!("{key}.encoding"), self.encoding.as_deref())?;
        let prefix = prefix(&format!("{key}.prefix"), self.prefix)?;
        let signed = match self.signed.as_deref() {
            Some(text) => Template::parse(&format!("{key}.signed"), text)?,
            None => Template::body(),
        };
        let timestamp = timestamp_check(key, &signed, self.timestamp_header, self.tolerance)?;
        Ok(HmacConfig {
            header,
            algorithm,
            encoding,
            prefix,
            signed,
            timestamp,
        })
    }
}

/// Whether `route_path` ends in a `{token}` segment; `{token}` anywhere
/// else is an error.
fn path_has_token(key: &str, route_path: &str) -> Result<bool, ConfigError> {
    let last = route_path.rsplit('/').next() == Some(TOKEN_SEGMENT);
    if route_path.matches(TOKEN_SEGMENT).count() > usize::from(last) {
        let message = format!(
            "route path {route_path:?} may have {TOKEN_SEGMENT} only once, as its last segment"
        );
        return Err(invalid(key, message));
    }
    Ok(last)
}

fn token_source(
    key: &str,
    param: Option<String>,
    route_path: &str,
    path_token: bool,
) -> Result<TokenSource, ConfigError> {
    match (param, path_token) {
        (Some(param), true) => Err(invalid(
            format!("{key}.param"),
            format!(
                "{param:?} and the {TOKEN_SEGMENT} segment of route path {route_path:?} \
                 would both carry the token (keep one)"
            ),
        )),
        (Some(param), false) => Ok(TokenSource::Query(param_name(key, param)?)),
        (None, true) => Ok(TokenSource::Path),
        (None, false) => Err(invalid(
            key,
            format!(
                "scheme \"token\" needs param = \"NAME\" or a route path ending in \
                 /{TOKEN_SEGMENT}, and route path {route_path:?} has no {TOKEN_SEGMENT}"
            ),
        )),
    }
}

/// A query parameter name: unreserved URL characters only, so that it is
/// matched without decoding.
fn param_name(key: &str, param: String) -> Result<String, ConfigError> {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    if param.is_empty() || !param.bytes().all(unreserved) {
        let message = format!("{param:?} is not a query parameter name (use A-Z a-z 0-9 - . _ ~)");
        return Err(invalid(format!("{key}.param"), message));
    }
    Ok(param)
}

fn required_header(key: &str, name: &str, text: Option<String>) -> Result<HeaderName, ConfigError> {
    let key = format!("{key}.{name}");
    let Some(text) = text else {
        return Err(invalid(
            key,
            "missing (name the header, like \"X-Signature\")",
        ));
    };
    header_name(&key, &text)
}

fn header_name(key: &str, text: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(text.as_bytes())
        .map_err(|_| invalid(key, format!("{text:?} is not a valid header name")))
}

fn algorithm(key: &str, text: Option<&str>) -> Result<Algorithm, ConfigError> {
    match text {
        None | Some("sha256") => Ok(Algorithm::Sha256),
        Some("sha1") => Ok(Algorithm::Sha1),
        Some("sha512") => Ok(Algorithm::Sha512),
        Some(other) => Err(invalid(
            key,
            format!("{other:?} is not an algorithm (expected sha256, sha1 or sha512)"),
        )),
    }
}

fn encoding(key: &str, text: Option<&str>) -> Result<Encoding, ConfigError> {
    match text {
        None | Some("hex") => Ok(Encoding::Hex),
        Some("base64") => Ok(Encoding::Base64),
        Some(other) => Err(invalid(
            key,
            format!("{other:?} is not an encoding (expected hex or base64)"),
        )),
    }
}

fn prefix(key: &str, text: Option<String>) -> Result<Option<String>, ConfigError> {
    match text {
        Some(text) if text.is_empty() => {
            Err(invalid(key, "\"\" is empty (remove the key for no prefix)"))
        }
        other => Ok(other),
    }
}

/// The timestamp header of scheme `hmac`: needed exactly when the template
/// signs `{timestamp}`, since an unsigned timestamp can be changed freely.
fn timestamp_check(
    key: &str,
    signed: &Template,
    header: Option<String>,
    tolerance: Option<String>,
) -> Result<Option<TimestampCheck>, ConfigError> {
    let Some(header) = header else {
        if signed.uses_timestamp() {
            let message = "missing: signed uses {timestamp}, so name the header that carries it";
            return Err(invalid(format!("{key}.timestamp_header"), message));
        }
        if let Some(text) = tolerance {
            let message = format!("{text:?} has no effect without timestamp_header");
            return Err(invalid(format!("{key}.tolerance"), message));
        }
        return Ok(None);
    };
    let header_key = format!("{key}.timestamp_header");
    if !signed.uses_timestamp() {
        let message = format!("{header:?} is set but signed does not use {{timestamp}}");
        return Err(invalid(header_key, message));
    }
    Ok(Some(TimestampCheck {
        header: header_name(&header_key, &header)?,
        tolerance: tolerance_or_default(&format!("{key}.tolerance"), tolerance.as_deref())?,
    }))
}

fn tolerance_or_default(key: &str, text: Option<&str>) -> Result<Duration, ConfigError> {
    text.map_or(Ok(DEFAULT_TOLERANCE), |text| duration(key, text))
}

/// The key material of every secret. A message names a secret by its index
/// and never quotes it.
fn secrets(key: &str, kind: Kind, raw: Option<&[String]>) -> Result<Vec<Vec<u8>>, ConfigError> {
    let Some(raw) = raw else {
        return Err(invalid(key, "missing (list one or more secrets)"));
    };
    if raw.is_empty() {
        return Err(invalid(key, "[] lists no secrets"));
    }
    raw.iter()
        .enumerate()
        .map(|(index, text)| secret(&format!("{key}[{index}]"), kind, text))
        .collect()
}

fn secret(key: &str, kind: Kind, text: &str) -> Result<Vec<u8>, ConfigError> {
    if text.trim().is_empty() {
        return Err(invalid(key, "the secret is blank"));
    }
    if text.trim() != text {
        return Err(invalid(
            key,
            "the secret has leading or trailing whitespace",
        ));
    }
    match kind {
        Kind::Basic if !text.contains(':') => Err(invalid(
            key,
            "the secret is not \"user:password\" (it has no ':')",
        )),
        Kind::StandardWebhooks => whsec(key, text),
        _ => Ok(text.as_bytes().to_vec()),
    }
}

/// A Standard Webhooks secret: `whsec_` and the base64 of the key.
fn whsec(key: &str, text: &str) -> Result<Vec<u8>, ConfigError> {
    let Some(encoded) = text.strip_prefix("whsec_") else {
        return Err(invalid(key, "the secret does not start with \"whsec_\""));
    };
    match STANDARD.decode(encoded) {
        Ok(bytes) if !bytes.is_empty() => Ok(bytes),
        Ok(_) => Err(invalid(key, "the secret has no key after \"whsec_\"")),
        Err(_) => Err(invalid(
            key,
            "the secret after \"whsec_\" is not valid base64",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "routes.wav.verify";
    const PATH: &str = "/callbacks/wav";
    const TOKEN_PATH: &str = "/callbacks/wav/{token}";

    /// The base64 key of the Standard Webhooks specification's test vector.
    const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn parse(table: &str, route_path: &str) -> Result<VerifyConfig, ConfigError> {
        let raw: RawVerify = toml::from_str(table)
            .unwrap_or_else(|err| panic!("expected {table:?} to be a verify table: {err}"));
        raw.into_verify(KEY, route_path)
    }

    fn parse_ok(table: &str) -> VerifyConfig {
        parse(table, PATH).unwrap_or_else(|err| panic!("expected {table:?} to parse: {err}"))
    }

    /// The error message for `table` on a route at `route_path`.
    fn error(table: &str, route_path: &str) -> String {
        match parse(table, route_path) {
            Ok(config) => panic!("expected {table:?} to be rejected, got {config:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn every_scheme_parses_with_its_defaults() {
        let token = parse("scheme = \"token\"\nsecrets = [\"t\"]", TOKEN_PATH).expect("token");
        assert_eq!(token.scheme(), &Scheme::Token(TokenSource::Path));
        let query = parse_ok("scheme = \"token\"\nparam = \"key\"\nsecrets = [\"t\"]");
        assert_eq!(
            query.scheme(),
            &Scheme::Token(TokenSource::Query("key".into()))
        );

        let header = parse_ok("scheme = \"header\"\nheader = \"X-Relay-Token\"\nsecrets = [\"t\"]");
        assert_eq!(
            header.scheme(),
            &Scheme::Header(HeaderName::from_static("x-relay-token"))
        );
        assert_eq!(
            parse_ok("scheme = \"basic\"\nsecrets = [\"u:p\"]").scheme(),
            &Scheme::Basic
        );
        assert_eq!(
            parse_ok("scheme = \"github\"\nsecrets = [\"s\"]").scheme(),
            &Scheme::Github
        );

        let five_minutes = Duration::from_secs(300);
        let stripe = parse_ok("scheme = \"stripe\"\nsecrets = [\"s\"]");
        assert_eq!(
            stripe.scheme(),
            &Scheme::Stripe {
                tolerance: five_minutes
            }
        );
        let standard = parse_ok(&format!(
            "scheme = \"standard-webhooks\"\nsecrets = [{WHSEC:?}]"
        ));
        let expected = Scheme::StandardWebhooks {
            tolerance: five_minutes,
        };
        assert_eq!(standard.scheme(), &expected);
        let kie = parse_ok("scheme = \"kie\"\nsecrets = [\"s\"]\ntolerance = \"90s\"");
        let expected = Scheme::Kie {
            tolerance: Duration::from_secs(90),
        };
        assert_eq!(kie.scheme(), &expected);
    }

    #[test]
    fn hmac_defaults_to_sha256_hex_over_the_body() {
        let config = parse_ok("scheme = \"hmac\"\nheader = \"X-Signature\"\nsecrets = [\"s\"]");
        let expected = HmacConfig {
            header: HeaderName::from_static("x-signature"),
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            prefix: None,
            signed: Template::body(),
            timestamp: None,
        };
        assert_eq!(config.scheme(), &Scheme::Hmac(expected));
    }

    #[test]
    fn hmac_reads_every_key() {
        let table = r#"
scheme = "hmac"
header = "X-Signature"
algorithm = "sha512"
encoding = "base64"
prefix = "v1="
signed = "{timestamp}:{task_id}:{body}"
timestamp_header = "X-Timestamp"
tolerance = "2m"
secrets = ["s"]
"#;
        let Scheme::Hmac(hmac) = parse_ok(table).scheme().clone() else {
            panic!("expected scheme hmac");
        };
        assert_eq!(hmac.algorithm, Algorithm::Sha512);
        assert_eq!(hmac.encoding, Encoding::Base64);
        assert_eq!(hmac.prefix.as_deref(), Some("v1="));
        assert!(hmac.signed.uses_timestamp() && hmac.signed.uses_task_id());
        let rendered = hmac.signed.render(b"{}", "1700000000", "abc");
        assert_eq!(&*rendered, b"1700000000:abc:{}");
        let expected = TimestampCheck {
            header: HeaderName::from_static("x-timestamp"),
            tolerance: Duration::from_secs(120),
        };
        assert_eq!(hmac.timestamp, Some(expected));
    }

    #[test]
    fn a_preset_rejects_the_keys_it_sets_itself() {
        assert_eq!(
            error(
                "scheme = \"github\"\nheader = \"X-Sig\"\nsecrets = [\"s\"]",
                PATH
            ),
            "routes.wav.verify.header: header is not used by scheme \"github\""
        );
        assert_eq!(
            error(
                "scheme = \"stripe\"\nalgorithm = \"sha1\"\nsecrets = [\"s\"]",
                PATH
            ),
            "routes.wav.verify.algorithm: algorithm is not used by scheme \"stripe\""
        );
        assert_eq!(
            error(
                "scheme = \"github\"\ntolerance = \"1m\"\nsecrets = [\"s\"]",
                PATH
            ),
            "routes.wav.verify.tolerance: tolerance is not used by scheme \"github\""
        );
        let table =
            format!("scheme = \"standard-webhooks\"\nsigned = \"{{body}}\"\nsecrets = [{WHSEC:?}]");
        assert_eq!(
            error(&table, PATH),
            "routes.wav.verify.signed: signed is not used by scheme \"standard-webhooks\""
        );
        assert_eq!(
            error("scheme = \"kie\"\nprefix = \"x\"\nsecrets = [\"s\"]", PATH),
            "routes.wav.verify.prefix: prefix is not used by scheme \"kie\""
        );
        assert_eq!(
            error(
                "scheme = \"basic\"\nparam = \"token\"\nsecrets = [\"u:p\"]",
                PATH
            ),
            "routes.wav.verify.param: param is not used by scheme \"basic\""
        );
    }

    #[test]
    fn unknown_keys_and_schemes_are_errors() {
        let unknown = toml::from_str::<RawVerify>("scheme = \"github\"\nsecret = \"s\"");
        let message = unknown.err().map(|err| err.to_string()).unwrap_or_default();
        assert!(message.contains("unknown field `secret`"), "{message}");
        assert_eq!(
            error("scheme = \"jwt\"\nsecrets = [\"s\"]", PATH),
            "routes.wav.verify.scheme: \"jwt\" is not a scheme (expected token, header, basic, \
             hmac, github, stripe, standard-webhooks or kie)"
        );
    }

    #[test]
    fn secrets_are_required_and_never_blank() {
        assert_eq!(
            error("scheme = \"github\"", PATH),
            "routes.wav.verify.secrets: missing (list one or more secrets)"
        );
        assert_eq!(
            error("scheme = \"github\"\nsecrets = []", PATH),
            "routes.wav.verify.secrets: [] lists no secrets"
        );
        assert_eq!(
            error("scheme = \"github\"\nsecrets = [\"s\", \" \"]", PATH),
            "routes.wav.verify.secrets[1]: the secret is blank"
        );
        assert_eq!(
            error("scheme = \"github\"\nsecrets = [\"hunter2 \"]", PATH),
            "routes.wav.verify.secrets[0]: the secret has leading or trailing whitespace"
        );
        assert_eq!(
            error("scheme = \"basic\"\nsecrets = [\"u:p\", \"hunter2\"]", PATH),
            "routes.wav.verify.secrets[1]: the secret is not \"user:password\" (it has no ':')"
        );
    }

    #[test]
    fn a_bad_whsec_secret_is_named_by_index_and_not_quoted() {
        let cases = [
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "does not start with \"whsec_\"",
            ),
            ("whsec_not*base64!", "after \"whsec_\" is not valid base64"),
            ("whsec_", "has no key after \"whsec_\""),
        ];
        for (secret, problem) in cases {
            let table =
                format!("scheme = \"standard-webhooks\"\nsecrets = [{WHSEC:?}, {secret:?}]");
            let message = error(&table, PATH);
            assert_eq!(
                message,
                format!("routes.wav.verify.secrets[1]: the secret {problem}")
            );
            let payload = secret.trim_start_matches("whsec_");
            assert!(
                payload.is_empty() || !message.contains(payload),
                "{message}"
            );
        }
        let config = parse_ok(&format!(
            "scheme = \"standard-webhooks\"\nsecrets = [{WHSEC:?}]"
        ));
        let key = STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("vector key");
        assert_eq!(config.secrets(), [key]);
    }

    #[test]
    fn hmac_needs_a_signature_header() {
        assert_eq!(
            error("scheme = \"hmac\"\nsecrets = [\"s\"]", PATH),
            "routes.wav.verify.header: missing (name the header, like \"X-Signature\")"
        );
        assert_eq!(
            error(
                "scheme = \"hmac\"\nheader = \"X Sig\"\nsecrets = [\"s\"]",
                PATH
            ),
            "routes.wav.verify.header: \"X Sig\" is not a valid header name"
        );
        assert_eq!(
            error("scheme = \"header\"\nsecrets = [\"s\"]", PATH),
            "routes.wav.verify.header: missing (name the header, like \"X-Signature\")"
        );
    }

    #[test]
    fn hmac_values_are_validated() {
        let hmac = |extra: &str| {
            format!("scheme = \"hmac\"\nheader = \"X-Sig\"\nsecrets = [\"s\"]\n{extra}")
        };
        let cases = [
            (
                "algorithm = \"md5\"",
                "routes.wav.verify.algorithm: \"md5\" is not an algorithm (expected sha256, sha1 \
                 or sha512)",
            ),
            (
                "encoding = \"base32\"",
                "routes.wav.verify.encoding: \"base32\" is not an encoding (expected hex or \
                 base64)",
            ),
            (
                "prefix = \"\"",
                "routes.wav.verify.prefix: \"\" is empty (remove the key for no prefix)",
            ),
            (
                "tolerance = \"0s\"\ntimestamp_header = \"X-Ts\"\nsigned = \"{timestamp}.{body}\"",
                "routes.wav.verify.tolerance: \"0s\" must be longer than zero",
            ),
        ];
        for (extra, expected) in cases {
            assert_eq!(error(&hmac(extra), PATH), expected);
        }
    }

    #[test]
    fn the_signed_template_and_the_timestamp_header_go_together() {
        let hmac = |extra: &str| {
            format!("scheme = \"hmac\"\nheader = \"X-Sig\"\nsecrets = [\"s\"]\n{extra}")
        };
        let cases = [
            (
                "signed = \"{timestamp}.{body}\"",
                "routes.wav.verify.timestamp_header: missing: signed uses {timestamp}, so name \
                 the header that carries it",
            ),
            (
                "timestamp_header = \"X-Ts\"",
                "routes.wav.verify.timestamp_header: \"X-Ts\" is set but signed does not use \
                 {timestamp}",
            ),
            (
                "tolerance = \"1m\"",
                "routes.wav.verify.tolerance: \"1m\" has no effect without timestamp_header",
            ),
            (
                "signed = \"{timestamp}.{payload}\"",
                "routes.wav.verify.signed: \"{timestamp}.{payload}\" has an unknown placeholder \
                 {payload} (expected {body}, {timestamp} or {task_id})",
            ),
            (
                "signed = \"{body\"",
                "routes.wav.verify.signed: \"{body\" has a '{' without a closing '}'",
            ),
            (
                "signed = \"{timestamp}\"\ntimestamp_header = \"X-Ts\"",
                "routes.wav.verify.signed: \"{timestamp}\" signs neither {body} nor {task_id}",
            ),
        ];
        for (extra, expected) in cases {
            assert_eq!(error(&hmac(extra), PATH), expected);
        }
    }

    #[test]
    fn token_needs_a_param_or_a_token_path_segment() {
        let token = "scheme = \"token\"\nsecrets = [\"s\"]";
        assert_eq!(
            error(token, PATH),
            "routes.wav.verify: scheme \"token\" needs param = \"NAME\" or a route path ending \
             in /{token}, and route path \"/callbacks/wav\" has no {token}"
        );
        assert_eq!(
            error(&format!("{token}\nparam = \"token\""), TOKEN_PATH),
            "routes.wav.verify.param: \"token\" and the {token} segment of route path \
             \"/callbacks/wav/{token}\" would both carry the token (keep one)"
        );
        assert_eq!(
            error(token, "/callbacks/{token}/wav"),
            "routes.wav.verify: route path \"/callbacks/{token}/wav\" may have {token} only \
             once, as its last segment"
        );
        assert_eq!(
            error(token, "/callbacks/{token}/{token}"),
            "routes.wav.verify: route path \"/callbacks/{token}/{token}\" may have {token} \
             only once, as its last segment"
        );
        assert_eq!(
            error(&format!("{token}\nparam = \"a&b\""), PATH),
            "routes.wav.verify.param: \"a&b\" is not a query parameter name (use A-Z a-z 0-9 - \
             . _ ~)"
        );
    }

    #[test]
    fn a_token_path_segment_needs_the_token_scheme() {
        assert_eq!(
            error("scheme = \"github\"\nsecrets = [\"s\"]", TOKEN_PATH),
            "routes.wav.verify.scheme: scheme \"github\" does not check the {token} segment of \
             route path \"/callbacks/wav/{token}\" (use scheme \"token\")"
        );
    }

    #[test]
    fn debug_redacts_every_secret() {
        let table = "scheme = \"basic\"\nsecrets = [\"relay:hunter2\", \"relay:correct-horse\"]";
        let shown = format!("{:?}", parse_ok(table));
        assert_eq!(
            shown,
            "VerifyConfig { scheme: Basic, secrets: [\"<redacted>\", \"<redacted>\"] }"
        );
    }

    #[test]
    fn secret_carriers_are_listed_for_redaction() {
        let headers = |table: &str| parse_ok(table).scheme().secret_headers().join(",");
        assert_eq!(
            headers("scheme = \"github\"\nsecrets = [\"s\"]"),
            "x-hub-signature-256"
        );
        assert_eq!(
            headers("scheme = \"stripe\"\nsecrets = [\"s\"]"),
            "stripe-signature"
        );
        assert_eq!(
            headers("scheme = \"kie\"\nsecrets = [\"s\"]"),
            "x-webhook-signature"
        );
        assert_eq!(
            headers("scheme = \"basic\"\nsecrets = [\"u:p\"]"),
            "authorization"
        );
        let table = format!("scheme = \"standard-webhooks\"\nsecrets = [{WHSEC:?}]");
        assert_eq!(headers(&table), "webhook-signature");
        assert_eq!(
            headers("scheme = \"hmac\"\nheader = \"X-Sig\"\nsecrets = [\"s\"]"),
            "x-sig"
        );

        let query = parse_ok("scheme = \"token\"\nparam = \"key\"\nsecrets = [\"s\"]");
        assert_eq!(
            (
                query.scheme().secret_param(),
                query.scheme().secret_in_path()
            ),
            (Some("key"), false)
        );
        assert!(query.scheme().secret_headers().is_empty());
        let path = parse("scheme = \"token\"\nsecrets = [\"s\"]", TOKEN_PATH).expect("token");
        assert_eq!(
            (path.scheme().secret_param(), path.scheme().secret_in_path()),
            (None, true)
        );
    }
}
