//! From a parsed request and the health state to the response: which path
//! means what, and what each method gets. Never sees bytes or sockets.

use crate::health::Health;
use crate::http::{Method, ParseError, Request, Response};

/// The content type of every body this server sends.
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";

/// Answers one request.
pub(crate) fn route(request: &Request<'_>, health: &Health) -> Response<'static> {
    if request.path != "/healthz" {
        return answer(request.method, 404, b"not found\n");
    }
    let (status, body): (u16, &'static [u8]) = if health.is_ready() {
        (200, b"ok\n")
    } else {
        (503, b"not ready\n")
    };
    match request.method {
        Method::Get | Method::Head => Response {
            allow: false,
            ..answer(request.method, status, body)
        },
        // Same status as GET so that an OPTIONS check (HAProxy's default method) tells the truth.
        Method::Options => Response {
            status,
            content_type: TEXT,
            body: b"",
            omit_body: false,
            allow: true,
        },
        Method::Other => Response {
            allow: true,
            ..answer(request.method, 405, b"method not allowed\n")
        },
    }
}

/// The answer to a request the parser refused.
pub(crate) fn refuse(error: ParseError) -> Response<'static> {
    let body: &'static [u8] = match error.status() {
        414 => b"request line too long\n",
        431 => b"request head too large\n",
        501 => b"not implemented\n",
        _ => b"bad request\n",
    };
    answer(Method::Get, error.status(), body)
}

/// A plain-text answer; HEAD gets the same headers without the body.
pub(crate) fn answer(method: Method, status: u16, body: &'static [u8]) -> Response<'static> {
    Response {
        status,
        content_type: TEXT,
        body,
        omit_body: method == Method::Head,
        allow: false,
    }
}
