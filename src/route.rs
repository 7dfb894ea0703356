//! From a parsed request and the health state to the response: which path
//! means what, what each method gets, and how the verdict is worded. Never
//! sees bytes or sockets.

use std::borrow::Cow;
use std::io;

use crate::error::invalid;

use crate::health::{Health, Kind, Report};
use crate::http::{Method, ParseError, Request, Response};
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

/// How the health endpoints are spelled and answered.
#[derive(Clone, Debug)]
pub(crate) struct Routes {
    /// Prepended to every path: `/v1.0` serves `/v1.0/healthz`.
    pub prefix: String,
    pub success: u16,
    pub failure: u16,
    pub failure_body: FailureBody,
    /// Put check failure reasons in response bodies (otherwise only in events).
    pub show_reasons: bool,
}

impl Default for Routes {
    fn default() -> Routes {
        Routes {
            prefix: String::new(),
            success: 200,
            failure: 503,
            failure_body: FailureBody::Text,
            show_reasons: false,
        }
    }
}

impl Routes {
    /// Refuses statuses and prefixes the endpoints cannot be served with.
    pub fn validate(&self) -> io::Result<()> {
        if ![200, 204].contains(&self.success) || ![500, 503].contains(&self.failure) {
            return Err(invalid(format!(
                "success_status must be 200 or 204 and failure_status 503 or 500, not {} and {}",
                self.success, self.failure
            )));
        }
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

/// Answers one request.
pub(crate) fn route(request: &Request<'_>, health: &Health, routes: &Routes) -> Response<'static> {
    let Some((endpoint, kind, name)) = endpoint(request.path, &routes.prefix) else {
        return answer(request.method, 404, b"not found\n");
    };
    if request.method == Method::Other {
        return Response {
            allow: true,
            ..answer(request.method, 405, b"method not allowed\n")
        };
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
        return answer(request.method, 404, b"not found\n");
    };
    let ok = report.passed();
    if plain {
        return verdict(request.method, ok, kind, routes, Some(&report));
    }
    // A body was asked for: success is 200 even where the plain answer is 204.
    let status = if ok { 200 } else { routes.failure };
    let (content_type, body) = if json {
        (HEALTH_JSON, render::json(&report, routes.show_reasons))
    } else {
        (
            TEXT,
            render::verbose(&report, endpoint, routes.show_reasons),
        )
    };
    respond(request.method, status, content_type, Cow::Owned(body))
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
    let (word, kind) = match family {
        "healthz" => ("healthz", Kind::Readiness),
        "readyz" => ("readyz", Kind::Readiness),
        "livez" => ("livez", Kind::Liveness),
        _ => return None,
    };
    Some((word, kind, name))
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
        let body: &'static [u8] = if routes.success == 204 { b"" } else { b"ok\n" };
        return respond(method, routes.success, TEXT, Cow::Borrowed(body));
    }
    match (routes.failure_body, report) {
        (FailureBody::DaprJson, Some(report)) => respond(
            method,
            routes.failure,
            JSON,
            Cow::Owned(render::dapr_error(&report.failing())),
        ),
        _ => {
            let body: &'static [u8] = match kind {
                Kind::Readiness => b"not ready\n",
                Kind::Liveness => b"not alive\n",
            };
            respond(method, routes.failure, TEXT, Cow::Borrowed(body))
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

/// The answer to a request the parser refused; `method` is what its head
/// started with, so that a refused `HEAD` gets no body either.
pub(crate) fn refuse(method: Method, error: ParseError) -> Response<'static> {
    let body: &'static [u8] = match error.status() {
        414 => b"request line too long\n",
        431 => b"request head too large\n",
        501 => b"not implemented\n",
        _ => b"bad request\n",
    };
    refusal(method, error.status(), body)
}

/// An error answer to a request not served: its text body, except to `HEAD`.
pub(crate) fn refusal(method: Method, status: u16, body: &'static [u8]) -> Response<'static> {
    Response {
        status,
        content_type: TEXT,
        body: Cow::Borrowed(body),
        omit_body: method == Method::Head,
        allow: false,
    }
}

/// A plain-text answer; HEAD gets the same headers without the body.
pub(crate) fn answer(method: Method, status: u16, body: &'static [u8]) -> Response<'static> {
    respond(method, status, TEXT, Cow::Borrowed(body))
}

/// GET gets the body; HEAD the headers only; OPTIONS the status, `Allow` and no body.
fn respond(
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
