//! `healthz-probe`: a health probe for images without curl or wget, a Docker
//! `HEALTHCHECK` command in one static binary. Installs with
//! `cargo install healthz --bin healthz-probe` (or `--path` to a checkout).
//!
//! ```text
//! healthz-probe http://127.0.0.1:8080/healthz
//! healthz-probe --timeout 500ms --expect 200-299 127.0.0.1:8080/readyz
//! healthz-probe --wait 30s 127.0.0.1:8080/readyz      # an init container's wait
//! healthz-probe --unix /run/app/health.sock /readyz   # a server on a Unix socket
//! HEALTHZ_PROBE_URL=http://127.0.0.1:8080/healthz healthz-probe
//! ```

#[path = "common/cli.rs"]
mod cli;

use std::process::ExitCode;
use std::time::Duration;

const ENV_URL: &str = "HEALTHZ_PROBE_URL";

const HELP: &str = "\
healthz-probe: check a health endpoint once, for Docker HEALTHCHECK and friends

USAGE:
    healthz-probe [OPTIONS] [URL]
    healthz-probe [OPTIONS] --unix SOCKET [PATH]

URL is http://HOST[:PORT][/PATH] or HOST:PORT[/PATH]; the path defaults to
/healthz. Without URL, the HEALTHZ_PROBE_URL environment variable is used.
With --unix, the probe connects to the Unix domain socket SOCKET instead
and asks for PATH (default /healthz), as curl's --unix-socket.

OPTIONS:
    --unix SOCKET        probe a server on this Unix domain socket
    --timeout DURATION   overall time for connect, send and read: 1s, 500ms, 2
                         (seconds); default 1s
    --expect LOW-HIGH    statuses that count as healthy; default 200-399, as the
                         kubelet (a single status such as 200 also works)
    --wait DURATION      try until healthy or until DURATION has passed, pausing
                         50 ms between tries, doubling up to 1 s; each try has
                         the whole --timeout. For init containers, compose's
                         depends_on and start-up scripts
    -h, --help           print this help

Prints one line saying why, and exits:
    0  healthy (with --wait: as soon as one try is)
    1  unhealthy: refused, timed out, malformed answer, or a status outside --expect
       (with --wait: the last try's reason, once DURATION has passed)
    2  usage error
";

struct Options {
    /// A URL, or (with `--unix`) a request path.
    url: String,
    unix: Option<String>,
    timeout: Duration,
    expect: std::ops::RangeInclusive<u16>,
    wait: Option<Duration>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut url = None;
    let mut timeout = Duration::from_secs(1);
    let mut expect = 200..=399;
    let mut wait = None;
    let mut unix = None;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_string(), Some(value.to_string()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--timeout" => timeout = parse_duration(&value("--timeout")?)?,
            "--expect" => expect = parse_range(&value("--expect")?)?,
            "--wait" => wait = Some(parse_duration(&value("--wait")?)?),
            "--unix" if cfg!(unix) => unix = Some(value("--unix")?).filter(|s| !s.is_empty()),
            "--unix" => return Err("--unix: this system has no Unix domain sockets".into()),
            _ if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
            _ if url.is_none() => url = Some(arg),
            _ => return Err(format!("more than one URL: `{arg}`")),
        }
    }
    let url = match (url, &unix) {
        (Some(url), _) => url,
        (None, Some(_)) => "/healthz".to_string(),
        (None, None) => match std::env::var(ENV_URL).ok().filter(|u| !u.is_empty()) {
            Some(url) => url,
            None => return Err(format!("no URL given and {ENV_URL} is not set")),
        },
    };
    Ok(Some(Options {
        url,
        unix,
        timeout,
        expect,
        wait,
    }))
}

/// `1s`, `500ms`, `1.5s` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration `{text}` (try 1s or 500ms)");
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 0.001)
    } else {
        (text.strip_suffix('s').unwrap_or(text), 1.0)
    };
    let secs = number.parse::<f64>().map_err(|_| bad())? * scale;
    if !(secs > 0.0 && secs <= 3600.0) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `200-399` or `200`.
fn parse_range(text: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let bad = || format!("bad status range `{text}` (try 200-399)");
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    let low: u16 = low.trim().parse().map_err(|_| bad())?;
    let high: u16 = high.trim().parse().map_err(|_| bad())?;
    if !(100..=999).contains(&low) || !(low..=999).contains(&high) {
        return Err(bad());
    }
    Ok(low..=high)
}

fn main() -> ExitCode {
    let prefix = "healthz-probe: ";
    let options = match cli::options(parse_args(std::env::args().skip(1)), HELP, prefix) {
        Ok(options) => options,
        Err(code) => return code,
    };
    let (probe, target) = match &options.unix {
        None => (healthz::Probe::new(&options.url), options.url.clone()),
        Some(socket) => (
            unix(socket, &options.url),
            format!("unix:{socket} {}", options.url),
        ),
    };
    let probe = match probe {
        Ok(probe) => probe.timeout(options.timeout).expect(options.expect),
        Err(e) => {
            eprintln!("healthz-probe: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match options.wait {
        Some(within) => probe.wait_healthy(within),
        None => probe.run(),
    };
    match result {
        Ok(answer) => {
            println!("healthy: status {} from {target}", answer.status());
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("unhealthy: {} ({target})", chain(&e));
            ExitCode::from(1)
        }
    }
}

#[cfg(unix)]
fn unix(socket: &str, path: &str) -> Result<healthz::Probe, healthz::ProbeError> {
    healthz::Probe::unix(socket, path)
}

#[cfg(not(unix))]
fn unix(_: &str, _: &str) -> Result<healthz::Probe, healthz::ProbeError> {
    unreachable!("--unix is a usage error off Unix")
}

/// An error and its causes on one line: `connection refused: Connection
/// refused (os error 111)`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        line = format!("{line}: {cause}");
        next = cause.source();
    }
    line
}
