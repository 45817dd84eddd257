//! The schemes that check an HMAC signature: one signature in one header
//! (`hmac`, `github`, `kie`), and the multi-signature headers of `stripe`
//! and `standard-webhooks`.
//!
//! Signatures are checked with `ring::hmac::verify`, which compares in
//! constant time. The signature is checked before the timestamp's age, so a
//! stale rejection means an authentic but late (or clock-skewed) request,
//! not a forgery.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::HeaderName;
use ring::hmac;

use super::config::{STRIPE_SIGNATURE, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};
use super::{Algorithm, Encoding, HmacConfig, Presented, Rejection, single_text};
use crate::percent::hex_digit;

/// Standard base64 that takes a signature with or without its padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// HMAC keys, one per configured secret.
pub(super) struct Keys(Vec<hmac::Key>);

impl Keys {
    pub(super) fn new(algorithm: Algorithm, secrets: &[Vec<u8>]) -> Keys {
        let algorithm = match algorithm {
            Algorithm::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Algorithm::Sha256 => hmac::HMAC_SHA256,
            Algorithm::Sha512 => hmac::HMAC_SHA512,
        };
        Keys(
            secrets
                .iter()
                .map(|secret| hmac::Key::new(algorithm, secret))
                .collect(),
        )
    }

    pub(super) fn sha256(secrets: &[Vec<u8>]) -> Keys {
        Keys::new(Algorithm::Sha256, secrets)
    }

    /// Whether any of `signatures` is valid for `signed` under any key.
    fn verify<'s>(&self, signed: &[u8], signatures: impl IntoIterator<Item = &'s [u8]>) -> bool {
        signatures.into_iter().any(|signature| {
            self.0
                .iter()
                .any(|key| hmac::verify(key, signed, signature).is_ok())
        })
    }
}

/// A timestamp header: its text, which is what was signed, and its value.
struct Stamp<'a> {
    header: HeaderName,
    text: &'a str,
    secs: u64,
}

impl<'a> Stamp<'a> {
    fn read(request: &Presented<'a>, header: &HeaderName) -> Result<Stamp<'a>, Rejection> {
        let text = single_text(request.headers, header)?;
        Stamp::parse(header, text)
    }

    fn parse(header: &HeaderName, text: &'a str) -> Result<Stamp<'a>, Rejection> {
        // Digits only: `parse` would also take a leading '+'.
        let digits = text.bytes().all(|b| b.is_ascii_digit());
        let secs =
            text.parse::<u64>().ok().filter(|_| digits).ok_or_else(|| {
                Rejection::malformed_header(header, "is not a unix time in seconds")
            })?;
        Ok(Stamp {
            header: header.clone(),
            text,
            secs,
        })
    }

    /// Accepts a timestamp at most `tolerance` before or after `now`.
    fn check_fresh(&self, now: SystemTime, tolerance: Duration) -> Result<(), Rejection> {
        let at = UNIX_EPOCH.checked_add(Duration::from_secs(self.secs));
        let distance = at.map(|at| match now.duration_since(at) {
            Ok(age) => age,
            Err(ahead) => ahead.duration(),
        });
        if distance.is_some_and(|distance| distance <= tolerance) {
            Ok(())
        } else {
            Err(Rejection::StaleTimestamp {
                header: self.header.clone(),
                tolerance,
            })
        }
    }
}

pub(super) fn check_hmac(
    hmac: &HmacConfig,
    keys: &Keys,
    request: &Presented<'_>,
) -> Result<(), Rejection> {
    let signature = read_signature(hmac, request)?;
    let stamp = match &hmac.timestamp {
        Some(check) => Some(Stamp::read(request, &check.header)?),
        None => None,
    };
    let task_id = if hmac.signed.uses_task_id() {
        request
            .task_id
            .filter(|id| !id.is_empty())
            .ok_or(Rejection::MissingTaskId)?
    } else {
        ""
    };

    let timestamp = stamp.as_ref().map_or("", |stamp| stamp.text);
    let signed = hmac.signed.render(request.body, timestamp, task_id);
    if !keys.verify(&signed, [signature.as_slice()]) {
        return Err(Rejection::BadSignature {
            header: hmac.header.clone(),
        });
    }
    match (stamp, &hmac.timestamp) {
        (Some(stamp), Some(check)) => stamp.check_fresh(request.now, check.tolerance),
        _ => Ok(()),
    }
}

/// The decoded signature of a single-header scheme, its prefix stripped.
fn read_signature(hmac: &HmacConfig, request: &Presented<'_>) -> Result<Vec<u8>, Rejection> {
    let value = single_text(request.headers, &hmac.header)?;
    let malformed = |problem| Rejection::malformed_header(&hmac.header, problem);
    let encoded = match &hmac.prefix {
        Some(prefix) => value
            .strip_prefix(prefix.as_str())
            .ok_or_else(|| malformed("lacks the configured prefix"))?,
        None => value,
    };
    match hmac.encoding {
        Encoding::Hex => hex_decode(encoded).ok_or_else(|| malformed("is not valid hex")),
        Encoding::Base64 => BASE64
            .decode(encoded)
            .map_err(|_| malformed("is not valid base64")),
    }
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?))
        .collect()
}

/// `Stripe-Signature: t=<unix>,v1=<hex>,v1=<hex>,...` over `{t}.{body}`.
/// Any v1 signature may match; other schemes (like v0) and v1 values that
/// are not hex are ignored, as Stripe's own libraries do.
pub(super) fn check_stripe(
    tolerance: Duration,
    keys: &Keys,
    request: &Presented<'_>,
) -> Result<(), Rejection> {
    let header = HeaderName::from_static(STRIPE_SIGNATURE);
    let value = single_text(request.headers, &header)?;
    let (stamp, signatures) = parse_stripe(&header, value)?;

    let signed = [stamp.text.as_bytes(), b".", request.body].concat();
    if !keys.verify(&signed, signatures.iter().map(Vec::as_slice)) {
        return Err(Rejection::BadSignature { header });
    }
    stamp.check_fresh(request.now, tolerance)
}

fn parse_stripe<'v>(
    header: &HeaderName,
    value: &'v str,
) -> Result<(Stamp<'v>, Vec<Vec<u8>>), Rejection> {
    let malformed = |problem| Rejection::malformed_header(header, problem);
    let mut stamp = None;
    let mut signatures = Vec::new();
    for item in value.split(',') {
        let (name, text) = item
            .trim()
            .split_once('=')
            .ok_or_else(|| malformed("has an item that is not name=value"))?;
        match name {
            "t" if stamp.is_some() => return Err(malformed("has more than one t=")),
            "t" => stamp = Some(Stamp::parse(header, text)?),
            "v1" => signatures.extend(hex_decode(text)),
            _ => {}
        }
    }
    let stamp = stamp.ok_or_else(|| malformed("has no t= timestamp"))?;
    Ok((stamp, signatures))
}

/// Standard Webhooks: `webhook-signature` is a space-separated list of
/// `v1,<base64>` over `{webhook-id}.{webhook-timestamp}.{body}`. Any v1
/// signature may match; other versions (like the asymmetric v1a) and v1
/// values that are not base64 are ignored.
pub(super) fn check_standard(
    tolerance: Duration,
    keys: &Keys,
    request: &Presented<'_>,
) -> Result<(), Rejection> {
    let header = HeaderName::from_static(WEBHOOK_SIGNATURE);
    let value = single_text(request.headers, &header)?;
    let id = single_text(request.headers, &HeaderName::from_static(WEBHOOK_ID))?;
    let stamp = Stamp::read(request, &HeaderName::from_static(WEBHOOK_TIMESTAMP))?;

    let signatures: Vec<Vec<u8>> = value
        .split_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, encoded)| BASE64.decode(encoded).ok())
        .collect();
    let signed = [
        id.as_bytes(),
        b".",
        stamp.text.as_bytes(),
        b".",
        request.body,
    ]
    .concat();
    if !keys.verify(&signed, signatures.iter().map(Vec::as_slice)) {
        return Err(Rejection::BadSignature { header });
    }
    stamp.check_fresh(request.now, tolerance)
}
