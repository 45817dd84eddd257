//! Redaction: hiding secrets a callback carried (credentials, signatures,
//! tokens in the path or the query) wherever the inspection side shows
//! one, unless the viewer asks to reveal them.
//!
//! The journal keeps every request exactly as received, so replays send
//! the original headers; only what is shown changes. A hidden value reads
//! [`REDACTED`]; header names, the other query parameters and the rest of
//! the path stay as they were.

use std::collections::HashMap;

use crate::config::Config;
use crate::percent;

/// What a hidden value is shown as.
pub const REDACTED: &str = "<redacted>";

/// Headers hidden on every route: credentials, cookies and the signature
/// headers of common webhook providers.
pub const SENSITIVE_HEADERS: [&str; 12] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-hub-signature",
    "x-hub-signature-256",
    "stripe-signature",
    "webhook-signature",
    "svix-signature",
    "x-webhook-signature",
    "x-api-key",
    "x-auth-token",
];

/// The placeholder of a path template whose segment is hidden.
const TOKEN_SEGMENT: &str = "{token}";

/// What to hide on one route, beyond [`SENSITIVE_HEADERS`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteRedaction {
    /// The route's name.
    pub route: String,
    /// More header names to hide, such as the route's verification header
    /// (any case).
    pub headers: Vec<String>,
    /// Query parameters whose values are hidden, such as a token parameter.
    pub query_params: Vec<String>,
    /// The route's path template, like `/callbacks/wav/{token}`: the
    /// segment at the place of `{token}` is hidden.
    pub path_template: Option<String>,
}

/// One route's rules, ready to apply.
#[derive(Clone, Debug, Default)]
struct Rules {
    /// Lower case.
    headers: Vec<String>,
    query_params: Vec<String>,
    /// Indexes of the path segments to hide, counted after the leading `/`.
    token_segments: Vec<usize>,
}

/// Hides secrets in headers and paths, by route.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    routes: HashMap<String, Rules>,
}

impl Redactor {
    /// A redactor hiding [`SENSITIVE_HEADERS`] everywhere, and on each
    /// route what its rule adds.
    pub fn new(rules: Vec<RouteRedaction>) -> Redactor {
        let routes = rules
            .into_iter()
            .map(|rule| {
                let token_segments = rule
                    .path_template
                    .as_deref()
                    .map(token_segments)
                    .unwrap_or_default();
                let rules = Rules {
                    headers: rule
                        .headers
                        .iter()
                        .map(|h| h.to_ascii_lowercase())
                        .collect(),
                    query_params: rule.query_params,
                    token_segments,
                };
                (rule.route, rules)
            })
            .collect();
        Redactor { routes }
    }

    /// Whether a header of a request to `route` is hidden.
    pub fn is_sensitive_header(&self, route: &str, name: &str) -> bool {
        let always = SENSITIVE_HEADERS
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name));
        always
            || self
                .routes
                .get(route)
                .is_some_and(|r| r.headers.iter().any(|h| h.eq_ignore_ascii_case(name)))
    }

    /// `headers` of a request to `route` with hidden values replaced.
    pub fn headers(&self, route: &str, headers: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
        headers
            .iter()
            .map(|(name, value)| {
                let value = if self.is_sensitive_header(route, name) {
                    REDACTED.as_bytes().to_vec()
                } else {
                    value.clone()
                };
                (name.clone(), value)
            })
            .collect()
    }

    /// The path and query of a request to `route` with its token segment
    /// and token parameters hidden.
    pub fn path_and_query(&self, route: &str, path_and_query: &str) -> String {
        let Some(rules) = self.routes.get(route) else {
            return path_and_query.to_string();
        };
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let mut shown = hide_segments(path, &rules.token_segments);
        if let Some(query) = query {
            shown.push('?');
            shown.push_str(&hide_params(query, &rules.query_params));
        }
        shown
    }
}

/// The redactor for a relay configured by `config`: the one place that
/// turns route settings into redaction rules.
pub fn redactor_for(config: &Config) -> Redactor {
    let rules = config
        .routes
        .values()
        .filter_map(|route| {
            let verify = route.verify.as_ref()?;
            Some(RouteRedaction {
                route: route.name.clone(),
                headers: verify
                    .scheme()
                    .secret_headers()
                    .iter()
                    .map(|h| h.to_string())
                    .collect(),
                query_params: verify
                    .scheme()
                    .secret_param()
                    .map(str::to_owned)
                    .into_iter()
                    .collect(),
                path_template: verify.scheme().secret_in_path().then(|| route.path.clone()),
            })
        })
        .collect();
    Redactor::new(rules)
}

/// Where `{token}` stands in a path template, as segment indexes.
fn token_segments(template: &str) -> Vec<usize> {
    template
        .trim_start_matches('/')
        .split('/')
        .enumerate()
        .filter(|(_, segment)| *segment == TOKEN_SEGMENT)
        .map(|(index, _)| index)
        .collect()
}

/// Replaces the segments at `indexes` of `path`. The route matched the
/// path, so the segments stand where the template has them.
fn hide_segments(path: &str, indexes: &[usize]) -> String {
    if indexes.is_empty() {
        return path.to_string();
    }
    let (lead, rest) = match path.strip_prefix('/') {
        Some(rest) => ("/", rest),
        None => ("", path),
    };
    let segments: Vec<&str> = rest
        .split('/')
        .enumerate()
        .map(|(index, segment)| {
            if indexes.contains(&index) && !segment.is_empty() {
                REDACTED
            } else {
                segment
            }
        })
        .collect();
    format!("{lead}{}", segments.join("/"))
}

/// Replaces the values of the parameters named in `names` (compared
/// decoded and in any case, as a server might read them).
fn hide_params(query: &str, names: &[String]) -> String {
    if names.is_empty() {
        return query.to_string();
    }
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _))
                if names
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(&percent::decode_lossy(name, true))) =>
            {
                format!("{name}={REDACTED}")
            }
            _ => pair.to_string(),
        })
        .collect();
    pairs.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav() -> Redactor {
        Redactor::new(vec![RouteRedaction {
            route: "wav".into(),
            headers: vec!["X-Music-Signature".into()],
            query_params: vec!["token".into()],
            path_template: Some("/callbacks/wav/{token}".into()),
        }])
    }

    fn header(name: &str, value: &str) -> (String, Vec<u8>) {
        (name.to_string(), value.as_bytes().to_vec())
    }

    #[test]
    fn the_always_sensitive_headers_are_hidden_on_every_route() {
        let headers = [
            header("Authorization", "Bearer x"),
            header("stripe-signature", "t=1,v1=ab"),
            header("Cookie", "session=1"),
            header("content-type", "application/json"),
        ];
        let shown = Redactor::default().headers("any", &headers);
        assert_eq!(
            shown,
            [
                header("Authorization", REDACTED),
                header("stripe-signature", REDACTED),
                header("Cookie", REDACTED),
                header("content-type", "application/json"),
            ]
        );
    }

    #[test]
    fn a_routes_own_headers_are_hidden_on_that_route_only() {
        let headers = [header("x-music-signature", "abc")];
        assert_eq!(
            wav().headers("wav", &headers),
            [header("x-music-signature", REDACTED)]
        );
        assert_eq!(wav().headers("mp4", &headers), headers);
    }

    #[test]
    fn the_token_segment_and_token_parameters_are_hidden() {
        let redactor = wav();
        assert_eq!(
            redactor.path_and_query("wav", "/callbacks/wav/s3cret?x=1"),
            "/callbacks/wav/<redacted>?x=1"
        );
        assert_eq!(
            redactor.path_and_query("wav", "/callbacks/wav/s3cret?a=1&token=t0k&b&TOKEN=2"),
            "/callbacks/wav/<redacted>?a=1&token=<redacted>&b&TOKEN=<redacted>"
        );
        assert_eq!(
            redactor.path_and_query("wav", "/callbacks/wav/s3cret?t%6Fken=t0k"),
            "/callbacks/wav/<redacted>?t%6Fken=<redacted>",
            "an escaped name is still the token parameter"
        );
        assert_eq!(
            redactor.path_and_query("mp4", "/callbacks/wav/s3cret?token=t0k"),
            "/callbacks/wav/s3cret?token=t0k",
            "other routes keep their paths"
        );
    }

    #[test]
    fn a_path_without_its_token_segment_is_left_as_it_is() {
        assert_eq!(wav().path_and_query("wav", "/callbacks"), "/callbacks");
        assert_eq!(
            wav().path_and_query("wav", "/callbacks/wav/"),
            "/callbacks/wav/"
        );
    }
}
