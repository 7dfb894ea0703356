//! The HTTP/1.1 wire format: a pure parser for request heads and a writer for
//! responses. Nothing here touches a socket, allocates per request, or knows
//! what a health check is.
//!
//! The parser takes the bytes received so far and answers `Complete`,
//! `Partial` (valid so far, send more) or an [`ParseError`] as soon as the
//! prefix can no longer become a valid request, so garbage is refused on its
//! first bad byte instead of at a timeout.

use std::borrow::Cow;
use std::fmt;

/// How much of a request head the parser accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Longest request line, line ending included (414 beyond).
    pub max_line: usize,
    /// Longest request head, request line and final empty line included (431 beyond).
    pub max_head: usize,
    /// Most header fields (431 beyond).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line: 4 * 1024,
            max_head: 8 * 1024,
            max_headers: 64,
        }
    }
}

impl Limits {
    /// Refuses limits no request could meet, or a buffer too large to bound.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.max_headers == 0 {
            return Err("max_headers must be at least 1");
        }
        if self.max_line < 16 || self.max_head < self.max_line {
            return Err("max_request_line must be at least 16 bytes and at most max_request_head");
        }
        if self.max_head > 1024 * 1024 {
            return Err(
                "max_request_head must be at most 1 MiB (it bounds each connection's buffer)",
            );
        }
        Ok(())
    }
}

/// The request methods the router tells apart; every other valid method is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
    Options,
    Other,
}

/// A parsed request head, borrowing from the receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Request<'a> {
    pub method: Method,
    /// The path of an origin-form or absolute-form target, without the query.
    pub path: &'a str,
    /// What follows `?` in the target, or `""`.
    pub query: &'a str,
    /// HTTP/1.1 (or a later 1.x); false for HTTP/1.0.
    pub http11: bool,
    /// Whether the client wants the connection kept open after the response.
    pub keep_alive: bool,
    /// The declared body length (0 when absent).
    pub content_length: u64,
    /// `Accept` prefers `application/health+json` or `application/json` to
    /// `text/plain` (media ranges and weights as RFC 9110 §12.5.1 reads them).
    pub accept_json: bool,
}

/// The outcome of feeding the bytes received so far to [`parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Parsed<'a> {
    /// A whole head: the request and the number of bytes it took.
    Complete(Request<'a>, usize),
    /// Valid so far; more bytes are needed.
    Partial,
}

/// Why a request head was refused. Every variant ends the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// The method is not a token of upper-case letters.
    Method,
    /// The request target is empty, not printable ASCII, or of an unsupported form.
    Target,
    /// The version is not `HTTP/1.x`, or the request line is not `METHOD SP TARGET SP VERSION`.
    Version,
    /// A CR not followed by LF.
    BareCr,
    /// A header name that is empty, not a token, or followed by whitespace before the colon.
    HeaderName,
    /// A header value with a control character (NUL included).
    HeaderValue,
    /// A header line continued on the next line (obsolete line folding).
    ObsFold,
    /// A `Content-Length` that is not a decimal number, overflows, or is repeated.
    ContentLength,
    /// More than one `Host` header.
    Host,
    /// `Transfer-Encoding` together with `Content-Length` (the request-smuggling signature).
    TransferEncodingWithLength,
    /// `Transfer-Encoding` on a request: bodies of unknown length are not accepted.
    TransferEncoding,
    /// More than [`MAX_EMPTY_LINES`] empty lines before the request line.
    EmptyLines,
    /// The request line is longer than [`Limits::max_line`].
    LineTooLong,
    /// The head is longer than [`Limits::max_head`] or has too many fields.
    HeadTooLarge,
}

impl ParseError {
    /// The status code that answers this error.
    pub fn status(self) -> u16 {
        match self {
            ParseError::LineTooLong => 414,
            ParseError::HeadTooLarge => 431,
            ParseError::TransferEncoding => 501,
            _ => 400,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::Method => "invalid method",
            ParseError::Target => "invalid request target",
            ParseError::Version => "invalid request line or HTTP version",
            ParseError::BareCr => "bare CR in request head",
            ParseError::HeaderName => "invalid header name",
            ParseError::HeaderValue => "invalid header value",
            ParseError::ObsFold => "obsolete line folding",
            ParseError::ContentLength => "invalid or repeated Content-Length",
            ParseError::Host => "repeated Host header",
            ParseError::TransferEncodingWithLength => "Transfer-Encoding with Content-Length",
            ParseError::TransferEncoding => "Transfer-Encoding is not supported on requests",
            ParseError::EmptyLines => "too many empty lines before the request line",
            ParseError::LineTooLong => "request line too long",
            ParseError::HeadTooLarge => "request head too large",
        })
    }
}

/// Parses the request head at the start of `buf`.
///
/// Pure and restartable: call it again with more bytes after `Partial`.
/// Never reads past `limits` and never panics, whatever `buf` holds.
pub(crate) fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Result<Parsed<'a>, ParseError> {
    let result = parse_head(buf, limits);
    match result {
        Ok(Parsed::Partial) if buf.len() >= limits.max_head => Err(ParseError::HeadTooLarge),
        Ok(Parsed::Complete(_, len)) if len > limits.max_head => Err(ParseError::HeadTooLarge),
        other => other,
    }
}

/// `Ok(None)` means "ran out of bytes": the caller answers `Partial`.
type Step<T> = Result<Option<T>, ParseError>;

fn parse_head<'a>(buf: &'a [u8], limits: &Limits) -> Result<Parsed<'a>, ParseError> {
    let Some(start) = empty_lines(buf)? else {
        return Ok(Parsed::Partial);
    };
    let (line, len) = match request_line(&buf[start..])? {
        Some(found) => found,
        None if buf.len() - start >= limits.max_line => return Err(ParseError::LineTooLong),
        None => return Ok(Parsed::Partial),
    };
    if len > limits.max_line {
        return Err(ParseError::LineTooLong);
    }
    let mut pos = start + len;

    let mut fields = Fields::default();
    loop {
        match header(buf, pos)? {
            None => return Ok(Parsed::Partial),
            Some((None, next)) => {
                pos = next;
                break;
            }
            Some((Some((name, value)), next)) => {
                fields.count += 1;
                if fields.count > limits.max_headers {
                    return Err(ParseError::HeadTooLarge);
                }
                fields.add(name, value)?;
                pos = next;
            }
        }
    }

    if fields.transfer_encoding {
        return Err(if fields.content_length.is_some() {
            ParseError::TransferEncodingWithLength
        } else {
            ParseError::TransferEncoding
        });
    }
    let keep_alive = if line.http11 {
        !fields.close
    } else {
        fields.keep_alive && !fields.close
    };
    let request = Request {
        method: line.method,
        path: line.path,
        query: line.query,
        http11: line.http11,
        keep_alive,
        content_length: fields.content_length.unwrap_or(0),
        accept_json: fields.accept.prefers_json(),
    };
    Ok(Parsed::Complete(request, pos))
}

struct RequestLine<'a> {
    method: Method,
    path: &'a str,
    query: &'a str,
    http11: bool,
}

fn method(word: &[u8]) -> Method {
    match word {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        b"OPTIONS" => Method::Options,
        _ => Method::Other,
    }
}

/// The method that a head, however partial or malformed, starts with (after
/// the empty lines the parser skips): so that even a refusal of a `HEAD`
/// request has no body. Past [`MAX_EMPTY_LINES`] the parser refuses before
/// any method, so none is read here either: whether an answer has a body
/// never depends on how the bytes were split.
pub(crate) fn method_of(buf: &[u8]) -> Method {
    let mut word = buf;
    for _ in 0..MAX_EMPTY_LINES {
        match word {
            [b'\r', b'\n', rest @ ..] | [b'\n', rest @ ..] => word = rest,
            _ => break,
        }
    }
    let end = word.iter().position(|&b| b == b' ').unwrap_or(word.len());
    method(&word[..end])
}

/// Most empty lines skipped before a request line. RFC 9112, section 2.2: a
/// server SHOULD ignore at least one (some clients send a CRLF after a body).
pub(crate) const MAX_EMPTY_LINES: usize = 4;

/// Skips up to [`MAX_EMPTY_LINES`] empty lines; returns where the request line starts.
fn empty_lines(buf: &[u8]) -> Step<usize> {
    let mut pos = 0;
    for _ in 0..=MAX_EMPTY_LINES {
        match line_end(buf, pos)? {
            Some((0, next)) => pos = next,
            Some(_) => return Ok(Some(pos)),
            None => return Ok(None),
        }
    }
    Err(ParseError::EmptyLines)
}

/// `METHOD SP TARGET SP HTTP/1.x` and a line ending; returns it and where the next line starts.
fn request_line(buf: &[u8]) -> Step<(RequestLine<'_>, usize)> {
    let method_end = match buf.iter().position(|&b| !is_method_byte(b)) {
        Some(end) => end,
        None => return Ok(None),
    };
    if method_end == 0 || buf[method_end] != b' ' {
        return Err(ParseError::Method);
    }
    let method = method(&buf[..method_end]);

    let target_start = method_end + 1;
    let target_len = match buf[target_start..].iter().position(|&b| !is_target_byte(b)) {
        Some(len) => len,
        None => return Ok(None),
    };
    let target_end = target_start + target_len;
    if target_len == 0 {
        return Err(ParseError::Target);
    }
    match buf[target_end] {
        b' ' => {}
        b'\r' | b'\n' => return Err(ParseError::Version),
        _ => return Err(ParseError::Target),
    }
    // Printable ASCII only, so this is always valid UTF-8.
    let target =
        std::str::from_utf8(&buf[target_start..target_end]).map_err(|_| ParseError::Target)?;
    let (path, query) = split_target(target)?;

    let version_start = target_end + 1;
    let (http11, after_version) = match version(&buf[version_start..])? {
        Some((http11, len)) => (http11, version_start + len),
        None => return Ok(None),
    };
    let next = match line_end(buf, after_version)? {
        Some((0, next)) => next,
        Some(_) => return Err(ParseError::Version),
        None => return Ok(None),
    };
    let line = RequestLine {
        method,
        path,
        query,
        http11,
    };
    Ok(Some((line, next)))
}

/// `HTTP/1.` and one digit; later 1.x minors are answered as 1.1 (RFC 9110, section 6.2).
fn version(buf: &[u8]) -> Step<(bool, usize)> {
    const PREFIX: &[u8] = b"HTTP/1.";
    let have = buf.len().min(PREFIX.len());
    if buf[..have] != PREFIX[..have] {
        return Err(ParseError::Version);
    }
    match buf.get(PREFIX.len()) {
        None => Ok(None),
        Some(digit) if digit.is_ascii_digit() => Ok(Some((*digit != b'0', PREFIX.len() + 1))),
        Some(_) => Err(ParseError::Version),
    }
}

/// Splits a target into path and query, reducing absolute-form to its path.
fn split_target(target: &str) -> Result<(&str, &str), ParseError> {
    let path_and_query = if target.starts_with('/') || target == "*" {
        target
    } else {
        let scheme_len = if starts_with_ignore_case(target, "http://") {
            7
        } else if starts_with_ignore_case(target, "https://") {
            8
        } else {
            return Err(ParseError::Target);
        };
        let rest = &target[scheme_len..];
        if rest.is_empty() || rest.starts_with(['/', '?']) {
            return Err(ParseError::Target);
        }
        match rest.find(['/', '?']) {
            Some(at) if rest.as_bytes()[at] == b'/' => &rest[at..],
            // `http://host?q` and `http://host` both mean the path `/`.
            Some(at) => return Ok(("/", &rest[at + 1..])),
            None => "/",
        }
    };
    Ok(match path_and_query.split_once('?') {
        Some((path, query)) => (path, query),
        None => (path_and_query, ""),
    })
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// One header line starting at `pos`: `Some((None, next))` for the empty line that ends the head.
#[allow(clippy::type_complexity)]
fn header(buf: &[u8], pos: usize) -> Step<(Option<(&[u8], &[u8])>, usize)> {
    let line = &buf[pos..];
    match line.first() {
        None => return Ok(None),
        Some(b' ' | b'\t') => return Err(ParseError::ObsFold),
        Some(b'\r' | b'\n') => {
            return match line_end(buf, pos)? {
                Some((_, next)) => Ok(Some((None, next))),
                None => Ok(None),
            }
        }
        Some(_) => {}
    }

    let name_len = match line.iter().position(|&b| !is_token_byte(b)) {
        Some(len) => len,
        None => return Ok(None),
    };
    if name_len == 0 || line[name_len] != b':' {
        return Err(ParseError::HeaderName);
    }
    let value_start = pos + name_len + 1;
    let value_len = match buf[value_start..].iter().position(|&b| !is_value_byte(b)) {
        Some(len) => len,
        None => return Ok(None),
    };
    let value_end = value_start + value_len;
    let next = match line_end(buf, value_end)? {
        Some((0, next)) => next,
        Some(_) => return Err(ParseError::HeaderValue),
        None => return Ok(None),
    };
    let value = trim_ows(&buf[value_start..value_end]);
    Ok(Some((Some((&line[..name_len], value)), next)))
}

/// At `pos`, expects CRLF or LF. Returns `(0, next)` for a line ending, `(1, _)` for
/// any other byte (the caller's error), `None` when the buffer ends first.
fn line_end(buf: &[u8], pos: usize) -> Step<(usize, usize)> {
    match buf.get(pos) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((0, pos + 1))),
        Some(b'\r') => match buf.get(pos + 1) {
            None => Ok(None),
            Some(b'\n') => Ok(Some((0, pos + 2))),
            Some(_) => Err(ParseError::BareCr),
        },
        Some(_) => Ok(Some((1, pos))),
    }
}

/// The header fields the server acts on; all others are read, checked and ignored.
#[derive(Default)]
struct Fields {
    count: usize,
    content_length: Option<u64>,
    transfer_encoding: bool,
    host: bool,
    close: bool,
    keep_alive: bool,
    accept: Accept,
}

impl Fields {
    fn add(&mut self, name: &[u8], value: &[u8]) -> Result<(), ParseError> {
        if name.eq_ignore_ascii_case(b"content-length") {
            if self.content_length.is_some() {
                return Err(ParseError::ContentLength);
            }
            self.content_length = Some(decimal(value).ok_or(ParseError::ContentLength)?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
        } else if name.eq_ignore_ascii_case(b"host") {
            if self.host {
                return Err(ParseError::Host);
            }
            self.host = true;
        } else if name.eq_ignore_ascii_case(b"accept") {
            self.accept.add(value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|&b| b == b',') {
                let option = trim_ows(option);
                self.close |= option.eq_ignore_ascii_case(b"close");
                self.keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        Ok(())
    }
}

/// What the client's `Accept` fields say of the two bodies there are: for
/// each, the weight (in thousandths) of the most specific media range that
/// matches it, and how specific that range is (`*/*` 0, `type/*` 1, exact 2).
#[derive(Default)]
struct Accept {
    json: Option<(u8, u16)>,
    text: Option<(u8, u16)>,
}

impl Accept {
    /// Takes in one `Accept` field: `#( media-range [ weight ] )`. A range
    /// that cannot be read is skipped, as if it were not there.
    fn add(&mut self, value: &[u8]) {
        for range in value.split(|&b| b == b',') {
            let mut parts = range.split(|&b| b == b';');
            let media = trim_ows(parts.next().unwrap_or_default());
            let Some(at) = media.iter().position(|&b| b == b'/') else {
                continue;
            };
            let (kind, sub) = (&media[..at], &media[at + 1..]);
            let weight = parts
                .map(trim_ows)
                .find(|p| p.len() >= 2 && p[..2].eq_ignore_ascii_case(b"q="))
                .map_or(Some(1000), |p| qvalue(&p[2..]));
            let Some(q) = weight else { continue };
            let json = [&b"health+json"[..], b"json"]
                .iter()
                .filter_map(|json| specificity(kind, sub, b"application", json))
                .max();
            Accept::keep(&mut self.json, json, q);
            Accept::keep(&mut self.text, specificity(kind, sub, b"text", b"plain"), q);
        }
    }

    /// The most specific match wins; of equally specific ones, the heavier.
    fn keep(best: &mut Option<(u8, u16)>, matched: Option<u8>, q: u16) {
        if let Some(specific) = matched {
            if best.map_or(true, |best| (specific, q) > best) {
                *best = Some((specific, q));
            }
        }
    }

    /// JSON when the client wants it (a weight above 0, `q=0` being "not
    /// acceptable") more than text; text on a tie (`*/*`) or with no `Accept`.
    fn prefers_json(&self) -> bool {
        let weight = |m: Option<(u8, u16)>| m.map_or(0, |(_, q)| q);
        weight(self.json) > 0 && weight(self.json) > weight(self.text)
    }
}

/// How specifically the range `kind/sub` matches `want_kind/want_sub`, if it does.
fn specificity(kind: &[u8], sub: &[u8], want_kind: &[u8], want_sub: &[u8]) -> Option<u8> {
    match (kind, sub) {
        (b"*", b"*") => Some(0),
        (kind, b"*") if kind.eq_ignore_ascii_case(want_kind) => Some(1),
        (kind, sub)
            if kind.eq_ignore_ascii_case(want_kind) && sub.eq_ignore_ascii_case(want_sub) =>
        {
            Some(2)
        }
        _ => None,
    }
}

/// A weight, `0` to `1` with at most three decimals, in thousandths.
fn qvalue(text: &[u8]) -> Option<u16> {
    let (whole, fraction) = match text.iter().position(|&b| b == b'.') {
        Some(at) => (&text[..at], &text[at + 1..]),
        None => (text, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let thousandths = fraction
        .iter()
        .chain(std::iter::repeat(&b'0'))
        .take(3)
        .fold(0, |n, d| n * 10 + u16::from(d - b'0'));
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Methods are case-sensitive tokens; every registered one is upper case, and a
/// lower-case `get` is far more likely a broken client than a new method.
fn is_method_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || b == b'-' || b == b'_'
}

/// Printable ASCII without space (RFC 3986 characters and more; nothing is decoded).
fn is_target_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

/// `tchar` from RFC 9110, section 5.6.2.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Field content: visible ASCII, space, tab and obs-text; no controls, no NUL.
fn is_value_byte(b: u8) -> bool {
    b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80
}

/// What a response carries besides the fixed headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Response<'a> {
    pub status: u16,
    pub content_type: &'a str,
    pub body: Cow<'a, [u8]>,
    /// Send the headers (Content-Length included) but not the body: HEAD.
    pub omit_body: bool,
    /// Add `Allow: GET, HEAD, OPTIONS`.
    pub allow: bool,
}

/// The methods every health endpoint answers.
pub(crate) const ALLOW: &str = "GET, HEAD, OPTIONS";

/// How the connection continues after this response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Persist {
    /// HTTP/1.1 default: nothing to say.
    KeepAlive,
    /// HTTP/1.0 that asked for keep-alive: say `Connection: keep-alive`.
    KeepAlive10,
    /// Say `Connection: close`, then close.
    Close,
}

/// Appends one whole response to `out`, ready for a single write.
pub(crate) fn write_response(
    out: &mut Vec<u8>,
    response: &Response<'_>,
    persist: Persist,
    date: &[u8],
) {
    let status = response.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\nContent-Type: ");
    out.extend_from_slice(response.content_type.as_bytes());
    // RFC 9110, section 8.6: no Content-Length on a 204.
    if status != 204 {
        out.extend_from_slice(b"\r\nContent-Length: ");
        push_decimal(out, response.body.len() as u64);
    }
    out.extend_from_slice(b"\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n");
    if response.allow {
        out.extend_from_slice(b"Allow: ");
        out.extend_from_slice(ALLOW.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match persist {
        Persist::KeepAlive => {}
        Persist::KeepAlive10 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Persist::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    if !response.omit_body {
        out.extend_from_slice(&response.body);
    }
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Every status this server sends, with its reason phrase: the one list,
/// which the counters of answers follow too.
pub(crate) const STATUSES: [(u16, &str); 12] = [
    (200, "OK"),
    (204, "No Content"),
    (400, "Bad Request"),
    (404, "Not Found"),
    (405, "Method Not Allowed"),
    (408, "Request Timeout"),
    (413, "Content Too Large"),
    (414, "URI Too Long"),
    (431, "Request Header Fields Too Large"),
    (500, "Internal Server Error"),
    (501, "Not Implemented"),
    (503, "Service Unavailable"),
];

/// The reason phrase for a status this server sends.
pub(crate) fn reason(status: u16) -> &'static str {
    STATUSES
        .iter()
        .find(|(code, _)| *code == status)
        .map_or("Unknown", |(_, phrase)| phrase)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_line: 128,
        max_head: 512,
        max_headers: 8,
    };

    fn complete(input: &[u8]) -> (Request<'_>, usize) {
        match parse(input, &LIMITS) {
            Ok(Parsed::Complete(request, len)) => (request, len),
            other => panic!("expected a complete request for {input:?}, got {other:?}"),
        }
    }

    fn error(input: &[u8]) -> ParseError {
        match parse(input, &LIMITS) {
            Err(e) => e,
            other => panic!("expected an error for {input:?}, got {other:?}"),
        }
    }

    #[test]
    fn test_parse_minimal_get_with_crlf() {
        let (req, len) = complete(b"GET /healthz HTTP/1.1\r\n\r\n");
        assert_eq!(req.method, Method::Get);
        assert_eq!(req.path, "/healthz");
        assert_eq!(req.query, "");
        assert!(req.http11 && req.keep_alive);
        assert_eq!(len, 25);
    }

    #[test]
    fn test_accept_bare_lf_line_endings() {
        let (req, len) = complete(b"GET /healthz HTTP/1.0\n\n");
        assert_eq!(req.path, "/healthz");
        assert_eq!(len, 23);
    }

    #[test]
    fn test_report_bytes_consumed_so_pipelined_requests_stay_apart() {
        let two = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        let (first, len) = complete(two);
        assert_eq!(first.path, "/a");
        assert_eq!(complete(&two[len..]).0.path, "/b");
    }

    #[test]
    fn test_partial_for_every_proper_prefix_of_a_valid_request() {
        let full = b"GET http://h/healthz?x=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
        for cut in 0..full.len() {
            assert_eq!(
                parse(&full[..cut], &LIMITS),
                Ok(Parsed::Partial),
                "cut at {cut}"
            );
        }
        assert_eq!(complete(full).1, full.len());
    }

    #[test]
    fn test_methods_get_head_options_and_others() {
        assert_eq!(complete(b"HEAD / HTTP/1.1\r\n\r\n").0.method, Method::Head);
        assert_eq!(
            complete(b"OPTIONS / HTTP/1.1\r\n\r\n").0.method,
            Method::Options
        );
        assert_eq!(
            complete(b"DELETE / HTTP/1.1\r\n\r\n").0.method,
            Method::Other
        );
        assert_eq!(
            complete(b"M-SEARCH / HTTP/1.1\r\n\r\n").0.method,
            Method::Other
        );
    }

    #[test]
    fn test_forbid_lowercase_and_empty_methods() {
        assert_eq!(error(b"get / HTTP/1.1\r\n\r\n"), ParseError::Method);
        assert_eq!(error(b" / HTTP/1.1\r\n\r\n"), ParseError::Method);
    }

    #[test]
    fn test_ignore_a_few_empty_lines_before_the_request_line() {
        let (request, len) = complete(b"\r\nGET /healthz HTTP/1.1\r\n\r\n");
        assert_eq!((request.path, len), ("/healthz", 27));
        let (request, len) = complete(b"\n\r\n\r\n\nGET /x HTTP/1.1\r\n\r\n");
        assert_eq!((request.path, len), ("/x", 25));
        assert_eq!(parse(b"\r\n\r", &LIMITS), Ok(Parsed::Partial));
        assert_eq!(parse(b"\r\n\r\n", &LIMITS), Ok(Parsed::Partial));
    }

    #[test]
    fn test_forbid_more_empty_lines_than_the_bound() {
        let many = b"\r\n".repeat(MAX_EMPTY_LINES + 1);
        assert_eq!(error(&many), ParseError::EmptyLines);
        let bare = [&b"\r\n\r"[..], b"x"].concat();
        assert_eq!(error(&bare), ParseError::BareCr);
    }

    #[test]
    fn test_tell_the_method_of_a_head_that_does_not_parse() {
        assert_eq!(
            method_of(b"HEAD /healthz HTTP/1.1\r\nBad Name: x"),
            Method::Head
        );
        assert_eq!(method_of(b"\r\nHEAD /x"), Method::Head);
        assert_eq!(method_of(b"GET"), Method::Get);
        assert_eq!(method_of(b"HEADX /"), Method::Other);
        assert_eq!(method_of(b""), Method::Other);
    }

    #[test]
    fn test_tell_no_method_past_the_empty_lines_the_parser_skips() {
        let at_bound = [b"\n".repeat(MAX_EMPTY_LINES), b"HEAD / HTTP/1.1".to_vec()].concat();
        assert_eq!(method_of(&at_bound), Method::Head);
        let past = [
            b"\n".repeat(MAX_EMPTY_LINES + 1),
            b"HEAD / HTTP/1.1".to_vec(),
        ]
        .concat();
        assert_eq!(error(&past), ParseError::EmptyLines);
        assert_eq!(method_of(&past), Method::Other, "refused before its method");
        let crlf = [b"\r\n".repeat(MAX_EMPTY_LINES + 1), b"HEAD /".to_vec()].concat();
        assert_eq!(method_of(&crlf), Method::Other);
    }

    #[test]
    fn test_reject_garbage_on_its_first_byte() {
        assert_eq!(error(&[0x16, 0x03, 0x01]), ParseError::Method);
        assert_eq!(error(b"\0"), ParseError::Method);
        assert_eq!(error(b"GET\0"), ParseError::Method);
    }

    #[test]
    fn test_forbid_request_with_multiple_space_delimiters() {
        assert_eq!(error(b"GET  / HTTP/1.1\r\n\r\n"), ParseError::Target);
        assert_eq!(error(b"GET /  HTTP/1.1\r\n\r\n"), ParseError::Version);
    }

    #[test]
    fn test_forbid_control_and_non_ascii_bytes_in_target() {
        assert_eq!(error(b"GET /a\tb HTTP/1.1\r\n\r\n"), ParseError::Target);
        assert_eq!(error(b"GET /\xc3\xa9 HTTP/1.1\r\n\r\n"), ParseError::Target);
    }

    #[test]
    fn test_split_query_from_path() {
        let (req, _) = complete(b"GET /healthz?verbose&exclude=db HTTP/1.1\r\n\r\n");
        assert_eq!((req.path, req.query), ("/healthz", "verbose&exclude=db"));
    }

    #[test]
    fn test_reduce_absolute_form_to_its_path() {
        assert_eq!(
            complete(b"GET http://example.com/healthz HTTP/1.1\r\n\r\n")
                .0
                .path,
            "/healthz"
        );
        assert_eq!(
            complete(b"GET HTTPS://h:8080/healthz?a HTTP/1.1\r\n\r\n")
                .0
                .query,
            "a"
        );
        assert_eq!(complete(b"GET http://h HTTP/1.1\r\n\r\n").0.path, "/");
        assert_eq!(complete(b"GET http://h?q HTTP/1.1\r\n\r\n").0.path, "/");
    }

    #[test]
    fn test_forbid_authority_form_and_other_schemes() {
        assert_eq!(error(b"CONNECT h:443 HTTP/1.1\r\n\r\n"), ParseError::Target);
        assert_eq!(error(b"GET ftp://h/ HTTP/1.1\r\n\r\n"), ParseError::Target);
        assert_eq!(error(b"GET http:// HTTP/1.1\r\n\r\n"), ParseError::Target);
    }

    #[test]
    fn test_accept_asterisk_form() {
        assert_eq!(complete(b"OPTIONS * HTTP/1.1\r\n\r\n").0.path, "*");
    }

    #[test]
    fn test_forbid_versions_other_than_http_1() {
        assert_eq!(error(b"GET / HTTP/2.0\r\n\r\n"), ParseError::Version);
        assert_eq!(error(b"GET / http/1.1\r\n\r\n"), ParseError::Version);
        assert_eq!(error(b"GET / HTTP/1.10\r\n\r\n"), ParseError::Version);
        assert_eq!(error(b"GET /\r\n\r\n"), ParseError::Version);
        assert_eq!(
            error(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            ParseError::Version
        );
    }

    #[test]
    fn test_treat_later_http_1_minor_versions_as_1_1() {
        assert!(complete(b"GET / HTTP/1.2\r\n\r\n").0.http11);
    }

    #[test]
    fn test_forbid_bare_cr() {
        assert_eq!(error(b"GET / HTTP/1.1\rX"), ParseError::BareCr);
        assert_eq!(
            error(b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n"),
            ParseError::BareCr
        );
        assert_eq!(
            error(b"GET / HTTP/1.1\r\nA: b\r\r\n\r\n"),
            ParseError::BareCr
        );
        assert_eq!(error(b"GET / HTTP/1.1\r\n\rX"), ParseError::BareCr);
    }

    #[test]
    fn test_forbid_obs_fold() {
        assert_eq!(
            error(b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"),
            ParseError::ObsFold
        );
    }

    #[test]
    fn test_forbid_invalid_header_names() {
        assert_eq!(
            error(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n"),
            ParseError::HeaderName
        );
        assert_eq!(
            error(b"GET / HTTP/1.1\r\n: h\r\n\r\n"),
            ParseError::HeaderName
        );
        assert_eq!(
            error(b"GET / HTTP/1.1\r\nA(b): h\r\n\r\n"),
            ParseError::HeaderName
        );
        assert_eq!(
            error(b"GET / HTTP/1.1\r\nNoColon\r\n\r\n"),
            ParseError::HeaderName
        );
    }

    #[test]
    fn test_forbid_nul_and_controls_in_header_values() {
        assert_eq!(
            error(b"GET / HTTP/1.1\r\nA: b\0c\r\n\r\n"),
            ParseError::HeaderValue
        );
        assert_eq!(
            error(b"GET / HTTP/1.1\r\nA: \x7f\r\n\r\n"),
            ParseError::HeaderValue
        );
    }

    #[test]
    fn test_accept_obs_text_and_empty_header_values() {
        complete(b"GET / HTTP/1.1\r\nA: caf\xe9\r\nB:\r\nC: \t \r\n\r\n");
    }

    #[test]
    fn test_http11_keeps_alive_unless_connection_close() {
        assert!(complete(b"GET / HTTP/1.1\r\n\r\n").0.keep_alive);
        assert!(
            !complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            !complete(b"GET / HTTP/1.1\r\nconnection: Upgrade, CLOSE\r\n\r\n")
                .0
                .keep_alive
        );
    }

    #[test]
    fn test_http10_closes_unless_connection_keep_alive() {
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").0.keep_alive);
        assert!(
            complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .0
                .keep_alive
        );
    }

    #[test]
    fn test_host_is_optional_but_never_repeated() {
        complete(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(
            error(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            ParseError::Host
        );
    }

    #[test]
    fn test_content_length_is_one_decimal_number() {
        assert_eq!(
            complete(b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n")
                .0
                .content_length,
            12
        );
        assert_eq!(
            complete(b"POST / HTTP/1.1\r\nContent-Length:  0 \r\n\r\n")
                .0
                .content_length,
            0
        );
        for bad in [
            &b"-1"[..],
            b"1,1",
            b"0x10",
            b"",
            b"1 2",
            b"99999999999999999999",
        ] {
            let mut input = b"POST / HTTP/1.1\r\nContent-Length: ".to_vec();
            input.extend_from_slice(bad);
            input.extend_from_slice(b"\r\n\r\n");
            assert_eq!(error(&input), ParseError::ContentLength, "{bad:?}");
        }
    }

    #[test]
    fn test_forbid_duplicate_content_length_even_when_equal() {
        let input = b"POST / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\n";
        assert_eq!(error(input), ParseError::ContentLength);
    }

    #[test]
    fn test_forbid_transfer_encoding() {
        let input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(error(input), ParseError::TransferEncoding);
        assert_eq!(ParseError::TransferEncoding.status(), 501);
        let both = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(error(both), ParseError::TransferEncodingWithLength);
        assert_eq!(ParseError::TransferEncodingWithLength.status(), 400);
    }

    #[test]
    fn test_request_line_over_its_limit_is_414_even_before_it_ends() {
        let mut long = b"GET /".to_vec();
        long.resize(LIMITS.max_line, b'a');
        assert_eq!(error(&long), ParseError::LineTooLong);
        long.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        assert_eq!(error(&long), ParseError::LineTooLong);
        assert_eq!(ParseError::LineTooLong.status(), 414);
    }

    #[test]
    fn test_head_over_its_limit_is_431_even_before_it_ends() {
        let mut big = b"GET / HTTP/1.1\r\nA: ".to_vec();
        big.resize(LIMITS.max_head, b'a');
        assert_eq!(error(&big), ParseError::HeadTooLarge);
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(error(&big), ParseError::HeadTooLarge);
        assert_eq!(ParseError::HeadTooLarge.status(), 431);
    }

    #[test]
    fn test_too_many_header_fields_is_431() {
        let mut input = b"GET / HTTP/1.1\r\n".to_vec();
        for _ in 0..=LIMITS.max_headers {
            input.extend_from_slice(b"A: b\r\n");
        }
        input.extend_from_slice(b"\r\n");
        assert_eq!(error(&input), ParseError::HeadTooLarge);
    }

    #[test]
    fn test_write_response_with_every_required_header() {
        let mut out = Vec::new();
        let response = Response {
            status: 503,
            content_type: "text/plain; charset=utf-8",
            body: Cow::Borrowed(b"not ready\n"),
            omit_body: false,
            allow: false,
        };
        write_response(
            &mut out,
            &response,
            Persist::Close,
            b"Sun, 06 Nov 1994 08:49:37 GMT",
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 503 Service Unavailable\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: 10\r\n\
             X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n\
             Connection: close\r\n\r\nnot ready\n"
        );
    }

    #[test]
    fn test_write_head_response_keeps_content_length_but_not_body() {
        let mut out = Vec::new();
        let response = Response {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: Cow::Borrowed(b"ok\n"),
            omit_body: true,
            allow: true,
        };
        write_response(&mut out, &response, Persist::KeepAlive10, b"x");
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.contains("Allow: GET, HEAD, OPTIONS\r\n"));
        assert!(text.contains("Connection: keep-alive\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    fn accepts_json(accept: &str) -> bool {
        let request = format!("GET / HTTP/1.1\r\nAccept: {accept}\r\n\r\n");
        complete(request.as_bytes()).0.accept_json
    }

    #[test]
    fn test_accept_matches_media_ranges_not_substrings() {
        assert!(!accepts_json("application/jsonx"));
        assert!(!accepts_json("application/json-seq"));
        assert!(!accepts_json("text/application/json"));
        assert!(accepts_json("application/*"));
        assert!(accepts_json("APPLICATION/HEALTH+JSON"));
    }

    #[test]
    fn test_accept_q_zero_means_not_acceptable() {
        assert!(!accepts_json("application/json;q=0, text/plain"));
        assert!(!accepts_json("application/json; q=0"));
        assert!(!accepts_json("application/json;q=0.000"));
        assert!(!accepts_json("*/*, application/json;q=0"));
        assert!(accepts_json("application/json;q=0.001"));
    }

    #[test]
    fn test_accept_weighs_json_against_text_and_the_most_specific_range_wins() {
        assert!(!accepts_json("*/*"), "a tie is text, as for the kubelet");
        assert!(!accepts_json("text/plain, application/json;q=0.9"));
        assert!(accepts_json("application/json, text/plain;q=0.5"));
        assert!(accepts_json("text/*;q=0.2, application/json;q=0.3"));
        assert!(
            accepts_json("text/plain;q=0, */*"),
            "text refused, JSON by */*"
        );
        assert!(accepts_json("text/plain;q=0, application/*"));
        assert!(
            !accepts_json("application/json;q=2"),
            "an unreadable weight is skipped"
        );
        assert!(!accepts_json("application/json;q=0.5x"));
    }

    #[test]
    fn test_accept_fields_combine_as_one_list() {
        let request =
            b"GET / HTTP/1.1\r\nAccept: text/plain;q=0.1\r\nAccept: application/json\r\n\r\n";
        assert!(complete(request).0.accept_json);
    }

    #[test]
    fn test_accept_json_when_accept_names_a_json_type() {
        assert!(
            complete(b"GET / HTTP/1.1\r\nAccept: application/health+json\r\n\r\n")
                .0
                .accept_json
        );
        assert!(
            complete(b"GET / HTTP/1.1\r\nAccept: text/html, Application/JSON;q=0.9\r\n\r\n")
                .0
                .accept_json
        );
        assert!(
            !complete(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n")
                .0
                .accept_json
        );
    }
}

#[cfg(test)]
mod fuzz;
