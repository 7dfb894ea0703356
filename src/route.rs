//! From a parsed request and the health state to the response: which path
//! means what, what each method gets, and how the verdict is worded. Never
//! sees bytes or sockets.

use std::borrow::Cow;
use std::io;

use crate::error::invalid;

use crate::counters::Counters;
use crate::health::{Health, Kind, Report};
use crate::http::{Method, ParseError, Request, Response};
use crate::metrics;
use crate::render;

/// The content type of text bodies.
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";
const HEALTH_JSON: &str = "application/health+json";
const JSON: &str = "application/json";

/// What a failing plain probe says in its body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureBody {
    /// `not ready` (or `not alive` on `/livez`), as text. The default.
    #[default]
    Text,
    /// daprd's JSON error:
    /// `{"errorCode":"ERR_HEALTH_NOT_READY","message":"dapr is not ready: [names]"}`,
    /// naming what fails.
    DaprJson,
}

/// The status of a passing plain probe. Two are allowed, so it is a type: a
/// status a prober would misread (201, 302) cannot be configured at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SuccessStatus {
    /// `200 OK` with the body `ok`: the default, and what load balancers
    /// that accept only 200 (AWS ALB by default) need.
    #[default]
    Ok,
    /// `204 No Content`, no body: daprd's.
    NoContent,
}

/// The status of a failing probe. Two are allowed, so it is a type: every
/// prober reads either as failure, and nothing else can be configured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailureStatus {
    /// `503 Service Unavailable`: "not now". The default.
    #[default]
    ServiceUnavailable,
    /// `500 Internal Server Error`: daprd's.
    InternalServerError,
}

impl SuccessStatus {
    /// The status code: 200 or 204.
    pub fn code(self) -> u16 {
        match self {
            SuccessStatus::Ok => 200,
            SuccessStatus::NoContent => 204,
        }
    }
}

impl FailureStatus {
    /// The status code: 503 or 500.
    pub fn code(self) -> u16 {
        match self {
            FailureStatus::ServiceUnavailable => 503,
            FailureStatus::InternalServerError => 500,
        }
    }
}

/// How the health endpoints are spelled and answered: by default, with no
/// prefix, 200 and 503 with a text body, no reasons shown, no `/metrics`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Routes {
    /// Prepended to every path: `/v1.0` serves `/v1.0/healthz`.
    pub prefix: String,
    pub success: SuccessStatus,
    pub failure: FailureStatus,
    pub failure_body: FailureBody,
    /// Put check failure reasons in response bodies (otherwise only in events).
    pub show_reasons: bool,
    /// Serve `/metrics`.
    pub metrics: bool,
}

impl Routes {
    /// Refuses a prefix the endpoints cannot be served under.
    pub fn validate(&self) -> io::Result<()> {
        let prefix = &self.prefix;
        let prefix_ok = prefix.is_empty()
            || (prefix.starts_with('/')
                && !prefix.ends_with('/')
                && prefix
                    .bytes()
                    .all(|b| (0x21..0x7f).contains(&b) && b != b'?'));
        if !prefix_ok {
            return Err(invalid(format!(
                "path_prefix `{prefix}` must start with `/`, not end with one, and be printable ASCII"
            )));
        }
        Ok(())
    }
}

/// The answer to one request.
pub(crate) fn answer(
    request: &Request<'_>,
    health: &Health,
    routes: &Routes,
    counters: &Counters,
) -> Response<'static> {
    if routes.metrics && request.path.strip_prefix(routes.prefix.as_str()) == Some("/metrics") {
        if request.method == Method::Other {
            return method_not_allowed();
        }
        let body = Cow::Owned(metrics::render(health, counters));
        return response(request.method, 200, metrics::CONTENT_TYPE, body);
    }
    // `OPTIONS *` asks about the server itself (RFC 9110 §9.3.7), as Apache's
    // `mod_proxy_hcheck` does: it is answered as `OPTIONS /healthz` is.
    let found = match request.path {
        "*" if request.method == Method::Options => Some(("healthz", Kind::Readiness, None)),
        path => endpoint(path, &routes.prefix),
    };
    let Some((endpoint, kind, name)) = found else {
        return text(request.method, 404, b"not found\n");
    };
    if request.method == Method::Other {
        return method_not_allowed();
    }
    let query = Query::parse(request.query);
    let json = query.json || request.accept_json;
    let plain = !json && !query.verbose;

    if plain && name.is_none() && query.exclude.is_empty() {
        // A failing answer that names what fails needs the full report.
        match health.quick(kind) {
            Some(false) if routes.failure_body == FailureBody::DaprJson => {}
            Some(ok) => return verdict(request.method, ok, kind, routes, None),
            None => {}
        }
    }
    let Some(report) = health.report(kind, name, &query.exclude) else {
        return text(request.method, 404, b"not found\n");
    };
    let ok = report.passed();
    if plain {
        return verdict(request.method, ok, kind, routes, Some(&report));
    }
    // A body was asked for: success is 200 even where the plain answer is 204.
    let status = if ok { 200 } else { routes.failure.code() };
    let (content_type, body) = if json {
        (HEALTH_JSON, render::json(&report, routes.show_reasons))
    } else {
        (
            TEXT,
            render::verbose(&report, endpoint, routes.show_reasons),
        )
    };
    response(request.method, status, content_type, Cow::Owned(body))
}

/// `(endpoint word, kind, optional name)` for a health path under `prefix`.
fn endpoint<'a>(path: &'a str, prefix: &str) -> Option<(&'static str, Kind, Option<&'a str>)> {
    let rest = path.strip_prefix(prefix)?.strip_prefix('/')?;
    let (family, name) = match rest.split_once('/') {
        Some((family, name)) => (family, Some(name)),
        None => (rest, None),
    };
    if name.is_some_and(|n| n.is_empty() || n.contains('/')) {
        return None;
    }
    let (kind, word) = Kind::of_path(family)?;
    Some((word, kind, name))
}

/// `405` with `Allow: GET, HEAD, OPTIONS`, for any other method on a known path.
fn method_not_allowed() -> Response<'static> {
    Response {
        allow: true,
        ..text(Method::Other, 405, b"method not allowed\n")
    }
}

/// The plain answer: the configured success or failure status and body.
fn verdict(
    method: Method,
    ok: bool,
    kind: Kind,
    routes: &Routes,
    report: Option<&Report>,
) -> Response<'static> {
    if ok {
        let body: &'static [u8] = match routes.success {
            SuccessStatus::Ok => b"ok\n",
            SuccessStatus::NoContent => b"",
        };
        return response(method, routes.success.code(), TEXT, Cow::Borrowed(body));
    }
    match (routes.failure_body, report) {
        (FailureBody::DaprJson, Some(report)) => response(
            method,
            routes.failure.code(),
            JSON,
            Cow::Owned(render::dapr_error(&report.failing())),
        ),
        _ => {
            let body = kind.family().failing_body;
            response(method, routes.failure.code(), TEXT, Cow::Borrowed(body))
        }
    }
}

/// The query options a health endpoint understands; others are ignored.
#[derive(Default)]
struct Query<'a> {
    verbose: bool,
    json: bool,
    exclude: Vec<&'a str>,
}

impl<'a> Query<'a> {
    fn parse(query: &'a str) -> Query<'a> {
        let mut parsed = Query::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "verbose" => parsed.verbose = true,
                "format" => parsed.json |= value == "json",
                "exclude" if !value.is_empty() => parsed.exclude.push(value),
                _ => {}
            }
        }
        parsed
    }
}

/// Why a request is refused rather than answered; the connection closes
/// after the refusal.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Refusal {
    /// The parser refused its head: 400, 414, 431 or 501.
    Malformed(ParseError),
    /// Its head did not arrive in time: 408.
    TimedOut,
    /// Its body is over the limit: 413.
    TooLarge,
}

impl Refusal {
    /// Why, in the words of [`Event::Rejected`](crate::Event::Rejected).
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed or oversized request",
            Refusal::TimedOut => "request head not received in time",
            Refusal::TooLarge => "request body too large",
        }
    }
}

/// The answer to a request not served; `method` is what its head started
/// with, so that a refused `HEAD` gets no body either (and `OPTIONS` gets
/// the error's text, as `GET` does).
pub(crate) fn refuse(method: Method, why: Refusal) -> Response<'static> {
    let (status, body): (u16, &'static [u8]) = match why {
        Refusal::Malformed(error) => match error.status() {
            414 => (414, b"request line too long\n"),
            431 => (431, b"request head too large\n"),
            501 => (501, b"not implemented\n"),
            status => (status, b"bad request\n"),
        },
        Refusal::TimedOut => (408, b"request timeout\n"),
        Refusal::TooLarge => (413, b"request body too large\n"),
    };
    Response {
        status,
        content_type: TEXT,
        body: Cow::Borrowed(body),
        omit_body: method == Method::Head,
        allow: false,
    }
}

/// A plain-text answer; HEAD gets the same headers without the body.
fn text(method: Method, status: u16, body: &'static [u8]) -> Response<'static> {
    response(method, status, TEXT, Cow::Borrowed(body))
}

/// GET gets the body; HEAD the headers only; OPTIONS the status, `Allow` and no body.
fn response(
    method: Method,
    status: u16,
    content_type: &'static str,
    body: Cow<'static, [u8]>,
) -> Response<'static> {
    let options = method == Method::Options;
    Response {
        status,
        content_type,
        body: if options { Cow::Borrowed(b"") } else { body },
        omit_body: method == Method::Head,
        allow: options,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, path: &'static str, query: &'static str) -> Request<'static> {
        Request {
            method,
            path,
            query,
            http11: true,
            keep_alive: true,
            content_length: 0,
            accept_json: false,
        }
    }

    fn get(health: &Health, routes: &Routes, target: &'static str) -> Response<'static> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        answer(
            &request(Method::Get, path, query),
            health,
            routes,
            &Counters::default(),
        )
    }

    #[test]
    fn endpoint_healthz_and_readyz_mean_readiness_and_livez_liveness() {
        assert!(matches!(
            endpoint("/healthz", ""),
            Some(("healthz", Kind::Readiness, None))
        ));
        assert!(matches!(
            endpoint("/readyz", ""),
            Some(("readyz", Kind::Readiness, None))
        ));
        assert!(matches!(
            endpoint("/livez", ""),
            Some(("livez", Kind::Liveness, None))
        ));
    }

    #[test]
    fn endpoint_with_one_more_segment_names_a_target_or_check() {
        assert!(matches!(
            endpoint("/readyz/db", ""),
            Some((_, Kind::Readiness, Some("db")))
        ));
        assert!(matches!(
            endpoint("/livez/loop", ""),
            Some((_, Kind::Liveness, Some("loop")))
        ));
    }

    #[test]
    fn endpoint_refuses_empty_or_deeper_names_and_other_paths() {
        for path in [
            "/readyz/",
            "/readyz/a/b",
            "/",
            "/healthzz",
            "/health",
            "healthz",
            "",
        ] {
            assert!(endpoint(path, "").is_none(), "{path}");
        }
    }

    #[test]
    fn endpoint_under_a_prefix_answers_only_there() {
        assert!(endpoint("/v1.0/healthz", "/v1.0").is_some());
        assert!(endpoint("/healthz", "/v1.0").is_none());
        assert!(endpoint("/v1.0healthz", "/v1.0").is_none());
        assert!(endpoint("/v1.0/livez/x", "/v1.0").is_some());
    }

    #[test]
    fn query_understands_verbose_json_and_exclude_and_ignores_the_rest() {
        let q = Query::parse("verbose&format=json&exclude=db&exclude=cache&x=1&&");
        assert!(q.verbose && q.json);
        assert_eq!(q.exclude, ["db", "cache"]);
        let q = Query::parse("verbose=0&format=xml&exclude=");
        assert!(q.verbose, "verbose is a flag: any value turns it on");
        assert!(!q.json, "only format=json asks for JSON");
        assert!(q.exclude.is_empty(), "an empty exclude names nothing");
        let q = Query::parse("");
        assert!(!q.verbose && !q.json && q.exclude.is_empty());
    }

    #[test]
    fn a_plain_probe_is_200_ok_or_503_not_ready() {
        let health = Health::new();
        let routes = Routes::default();
        let failing = get(&health, &routes, "/healthz");
        assert_eq!(
            (failing.status, &failing.body[..]),
            (503, &b"not ready\n"[..])
        );
        health.ready();
        let passing = get(&health, &routes, "/healthz?ignored=1");
        assert_eq!((passing.status, &passing.body[..]), (200, &b"ok\n"[..]));
        assert_eq!(&get(&health, &routes, "/livez").body[..], b"ok\n");
    }

    #[test]
    fn head_has_the_status_without_a_body_and_options_adds_allow() {
        let health = Health::new();
        let routes = Routes::default();
        let head = answer(
            &request(Method::Head, "/healthz", ""),
            &health,
            &routes,
            &Counters::default(),
        );
        assert_eq!(
            (head.status, head.omit_body, head.allow),
            (503, true, false)
        );
        let options = answer(
            &request(Method::Options, "/healthz", ""),
            &health,
            &routes,
            &Counters::default(),
        );
        assert_eq!((options.status, options.allow), (503, true));
        assert!(options.body.is_empty());
    }

    #[test]
    fn other_methods_get_405_with_allow_and_unknown_paths_404() {
        let health = Health::new();
        let routes = Routes::default();
        let post = answer(
            &request(Method::Other, "/healthz", ""),
            &health,
            &routes,
            &Counters::default(),
        );
        assert_eq!((post.status, post.allow), (405, true));
        assert_eq!(get(&health, &routes, "/metrics").status, 404);
        assert_eq!(get(&health, &routes, "/readyz/nope").status, 404);
    }

    #[test]
    fn the_daprd_flavour_is_204_or_500_with_its_json_error() {
        let health = Health::new();
        let routes = Routes {
            prefix: "/v1.0".into(),
            success: SuccessStatus::NoContent,
            failure: FailureStatus::InternalServerError,
            failure_body: FailureBody::DaprJson,
            show_reasons: false,
            metrics: false,
        };
        let failing = get(&health, &routes, "/v1.0/healthz");
        assert_eq!((failing.status, failing.content_type), (500, JSON));
        assert_eq!(
            &failing.body[..],
            br#"{"errorCode":"ERR_HEALTH_NOT_READY","message":"dapr is not ready: [ready]"}"#
        );
        health.ready();
        let passing = get(&health, &routes, "/v1.0/healthz");
        assert_eq!((passing.status, passing.body.len()), (204, 0));
        assert_eq!(get(&health, &routes, "/v1.0/healthz?verbose").status, 200);
    }

    #[test]
    fn metrics_are_served_only_when_asked_for_and_under_the_prefix() {
        let health = Health::new();
        let mut routes = Routes::default();
        assert_eq!(
            get(&health, &routes, "/metrics").status,
            404,
            "off by default"
        );
        routes.metrics = true;
        let metrics = get(&health, &routes, "/metrics");
        assert_eq!(
            (metrics.status, metrics.content_type),
            (200, metrics::CONTENT_TYPE)
        );
        routes.prefix = "/v1.0".into();
        assert_eq!(get(&health, &routes, "/metrics").status, 404);
        assert_eq!(get(&health, &routes, "/v1.0/metrics").status, 200);
        let post = answer(
            &request(Method::Other, "/v1.0/metrics", ""),
            &health,
            &routes,
            &Counters::default(),
        );
        assert_eq!((post.status, post.allow), (405, true));
    }

    #[test]
    fn a_refusal_of_head_has_no_body_and_others_say_why() {
        let head = refuse(Method::Head, Refusal::Malformed(ParseError::HeadTooLarge));
        assert_eq!((head.status, head.omit_body), (431, true));
        let get = refuse(Method::Get, Refusal::Malformed(ParseError::LineTooLong));
        assert_eq!(
            (get.status, &get.body[..]),
            (414, &b"request line too long\n"[..])
        );
        let options = refuse(Method::Options, Refusal::TimedOut);
        assert_eq!((options.status, options.allow), (408, false));
        assert_eq!(&options.body[..], b"request timeout\n");
    }
}
