//! A health server driven from stdin: the README's main job, and the contract
//! that benchmarks and scripts drive.
//!
//! ```text
//! cargo run --example serve -- --addr 127.0.0.1:8080
//! cargo run --example serve -- --unix /tmp/health.sock
//! ```
//!
//! Run with `--help` for the whole contract.

#[path = "../src/bin/common/cli.rs"]
mod cli;

use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

const HELP: &str = "\
serve: a healthz server controlled through stdin

USAGE:
    serve [--addr HOST:PORT | --unix PATH] [--not-ready] [--target NAME]...
          [--liveness-target NAME]... [--heartbeat NAME=DURATION]...
          [--thread NAME]... [--check KIND:NAME=ARG]... [--hold-memory MIB]
          [--systemd] [--metrics]

OPTIONS:
    --addr HOST:PORT   where to listen (default 0.0.0.0:8080, Dapr's healthz port;
                       port 0 picks a free one)
    --unix PATH        listen on a Unix domain socket at PATH instead of TCP
                       (not with --addr); a stale socket file there is
                       replaced, saying so on stderr, and the file is
                       removed at shutdown. Probe it with
                       `healthz-probe --unix PATH` or `curl --unix-socket
                       PATH http://localhost/healthz`
    --not-ready        start not ready (the default is ready)
    --target NAME      register a readiness target NAME, starting ready
                       (repeatable)
    --liveness-target NAME
                       register a liveness target NAME, starting alive
                       (repeatable)
    --heartbeat NAME=DURATION
                       register a heartbeat NAME: liveness fails when no
                       `beat NAME` comes for DURATION (repeatable)
    --thread NAME      start a demo worker thread NAME holding a thread
                       guard: `panic NAME` makes it panic, which fails
                       liveness (repeatable)
    --check KIND:NAME=ARG
                       add a ready-made check NAME that gates readiness, run
                       on each probe (repeatable). KIND and ARG:
                         tcp      HOST:PORT   a TCP connection opens
                         http     URL         GET URL answers 200-399
                         dns      HOST        HOST resolves
                         fds      10% or 100  that share or count of the file
                                              descriptor limit stays free
                         memory   90%         the memory cgroup uses at most
                                              that share of its limit
                         threads  COUNT       at most COUNT threads
                         dir      PATH        a file can be written and synced
                                              in PATH (and is removed)
                       e.g. --check tcp:db=127.0.0.1:5432 --check fds:fds=10%
    --hold-memory MIB  allocate MIB mebibytes, write every page and hold them
                       until exit: a demo load for --check memory
    --systemd          speak systemd's notify protocol: READY=1, STATUS=,
                       STOPPING=1, and WATCHDOG=1 while alive (does nothing
                       unless systemd sets NOTIFY_SOCKET)
    --metrics          serve GET /metrics for Prometheus
    --drain-delay D    how long `drain` keeps serving: 5s (default), 250ms
    --shutdown-timeout D
                       how long shutdown waits for requests in flight before
                       it cuts them: 5s (default), as Dapr's health server
    -h, --help         print this help

Once bound, prints `listening on HOST:PORT` (the real address), or
`listening on unix:PATH`, as its first line on stdout. Then GET /healthz and
/readyz answer 200 when ready and 503 when not, /livez answers 200 while the
process is alive, /readyz/NAME answers for one target; ?verbose and
?format=json explain the verdict.

STDIN COMMANDS, one per line:
    ready              mark the service ready
    not-ready          mark the service not ready
    ready NAME         mark target NAME ready
    not-ready NAME     mark target NAME not ready
    alive NAME         mark liveness target NAME alive
    not-alive NAME     mark liveness target NAME not alive
    beat NAME          beat heartbeat NAME
    panic NAME         make worker thread NAME panic
    drain              fail readiness at once, keep serving for the drain
                       delay (liveness still passes), then shut down
    shutdown           shut down gracefully and exit
End of input also shuts down. Events (listening, readiness changes, drain,
shutdown) are printed to stderr.

EXIT STATUS:
    0  shut down; requests still in flight at the shutdown deadline are cut
       and reported on stderr, as a slow client is no failure of the service
    1  could not listen, or the server failed
    2  usage error
";

struct Options {
    addr: String,
    addr_given: bool,
    unix: Option<String>,
    ready: bool,
    targets: Vec<String>,
    liveness_targets: Vec<String>,
    heartbeats: Vec<(String, Duration)>,
    threads: Vec<String>,
    checks: Vec<healthz::Check>,
    hold_memory: usize,
    systemd: bool,
    metrics: bool,
    drain_delay: Duration,
    shutdown_timeout: Duration,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        addr: "0.0.0.0:8080".to_string(),
        addr_given: false,
        unix: None,
        ready: true,
        targets: Vec::new(),
        liveness_targets: Vec::new(),
        heartbeats: Vec::new(),
        threads: Vec::new(),
        checks: Vec::new(),
        hold_memory: 0,
        systemd: false,
        metrics: false,
        drain_delay: Duration::from_secs(5),
        shutdown_timeout: Duration::from_secs(5),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--not-ready" => options.ready = false,
            "--addr" => {
                options.addr = args.next().ok_or("--addr needs HOST:PORT")?;
                options.addr_given = true;
            }
            "--unix" if cfg!(unix) => {
                options.unix = Some(args.next().ok_or("--unix needs a PATH")?)
            }
            "--unix" => return Err("--unix: this system has no Unix domain sockets".into()),
            "--target" => options
                .targets
                .push(args.next().ok_or("--target needs a NAME")?),
            "--liveness-target" => options
                .liveness_targets
                .push(args.next().ok_or("--liveness-target needs a NAME")?),
            "--heartbeat" => {
                let spec = args.next().ok_or("--heartbeat needs NAME=DURATION")?;
                let (name, period) = spec
                    .split_once('=')
                    .ok_or(format!("--heartbeat {spec}: expected NAME=DURATION"))?;
                let period = parse_duration(period)
                    .ok_or(format!("--heartbeat {spec}: bad duration `{period}`"))?;
                options.heartbeats.push((name.to_string(), period));
            }
            "--thread" => options
                .threads
                .push(args.next().ok_or("--thread needs a NAME")?),
            "--check" => {
                let spec = args.next().ok_or("--check needs KIND:NAME=ARG")?;
                options
                    .checks
                    .push(check(&spec).map_err(|e| format!("--check {spec}: {e}"))?);
            }
            "--hold-memory" => {
                let mib = args.next().ok_or("--hold-memory needs MIB")?;
                options.hold_memory = mib
                    .parse()
                    .map_err(|_| format!("--hold-memory: bad MIB `{mib}`"))?;
            }
            "--systemd" => options.systemd = true,
            "--metrics" => options.metrics = true,
            "--drain-delay" => options.drain_delay = duration(&arg, args.next())?,
            "--shutdown-timeout" => options.shutdown_timeout = duration(&arg, args.next())?,
            _ => match arg.strip_prefix("--addr=") {
                Some(addr) => {
                    options.addr = addr.to_string();
                    options.addr_given = true;
                }
                None => return Err(format!("unknown argument `{arg}`")),
            },
        }
    }
    if options.addr_given && options.unix.is_some() {
        return Err("--unix and --addr are two places to listen; give one".into());
    }
    Ok(Some(options))
}

/// A ready-made check from `KIND:NAME=ARG`.
fn check(spec: &str) -> Result<healthz::Check, String> {
    use healthz::checks::{self, Free};

    let (kind, rest) = spec.split_once(':').ok_or("expected KIND:NAME=ARG")?;
    let (name, arg) = rest.split_once('=').ok_or("expected KIND:NAME=ARG")?;
    let percent = |arg: &str| -> Result<u8, String> {
        let digits = arg
            .strip_suffix('%')
            .ok_or(format!("`{arg}`: expected a share, 90%"))?;
        digits
            .parse()
            .ok()
            .filter(|p| *p <= 100)
            .ok_or(format!("`{arg}`: expected 0% to 100%"))
    };
    let count = |arg: &str| {
        arg.parse()
            .map_err(|_| format!("`{arg}`: expected a count"))
    };
    Ok(match kind {
        "tcp" => checks::tcp(name, arg),
        "http" => checks::http(name, arg, 200..=399).map_err(|e| e.to_string())?,
        "dns" => checks::dns(name, arg),
        "fds" if arg.ends_with('%') => checks::descriptors(name, Free::Percent(percent(arg)?)),
        "fds" => checks::descriptors(name, Free::Count(count(arg)?)),
        "memory" => checks::memory(name, percent(arg)?),
        "threads" => checks::threads(name, count(arg)?),
        "dir" => checks::writable(name, arg),
        _ => {
            return Err(format!(
                "unknown KIND `{kind}`: tcp, http, dns, fds, memory, threads or dir"
            ))
        }
    })
}

fn main() -> ExitCode {
    let options = match cli::options(parse_args(std::env::args().skip(1)), HELP, "error: ") {
        Ok(options) => options,
        Err(code) => return code,
    };

    let health = healthz::Health::new();
    health.set_ready(options.ready);
    let mut targets = Vec::new();
    for name in &options.targets {
        match health.target(name) {
            Ok(target) => {
                target.ready();
                targets.push(target);
            }
            Err(e) => {
                eprintln!("error: --target {name}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let mut liveness_targets = Vec::new();
    for name in &options.liveness_targets {
        match health.liveness_target(name) {
            Ok(target) => liveness_targets.push(target),
            Err(e) => {
                eprintln!("error: --liveness-target {name}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let mut heartbeats = Vec::new();
    for (name, period) in &options.heartbeats {
        match health.heartbeat(name, *period) {
            Ok(heartbeat) => heartbeats.push(heartbeat),
            Err(e) => {
                eprintln!("error: --heartbeat {name}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    // Every page written, so that every page counts against a memory limit.
    let mut held = vec![0u8; options.hold_memory << 20];
    for page in held.chunks_mut(4096) {
        page[0] = 1;
    }
    let _held = std::hint::black_box(held);
    for check in options.checks {
        if let Err(e) = health.add_check(check) {
            eprintln!("error: --check: {e}");
            return ExitCode::from(2);
        }
    }
    let mut threads = Vec::new();
    for name in &options.threads {
        match health.thread_guard(name).map(|guard| worker(name, guard)) {
            Ok(Ok(worker)) => threads.push(worker),
            Ok(Err(e)) => {
                eprintln!("error: --thread {name}: cannot start it: {e}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("error: --thread {name}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let server = healthz::Server::new(health.clone())
        .notify_systemd(options.systemd)
        .metrics(options.metrics)
        .shutdown_timeout(options.shutdown_timeout)
        .on_event(|event| eprintln!("healthz: {event}"));
    let control = Control {
        health,
        targets,
        liveness_targets,
        heartbeats,
        threads,
        drain_delay: options.drain_delay,
    };
    match &options.unix {
        None => match server.bind(&options.addr) {
            Ok(server) => control.run(&server, server.local_addr()),
            Err(e) => cannot_listen(&options.addr, &e),
        },
        #[cfg(unix)]
        Some(path) => match server.bind_unix(path) {
            Ok(server) => control.run(&server, format_args!("unix:{path}")),
            Err(e) => cannot_listen(&format!("unix:{path}"), &e),
        },
        #[cfg(not(unix))]
        Some(_) => unreachable!("--unix is a usage error off Unix"),
    }
}

fn cannot_listen(at: &str, e: &healthz::Error) -> ExitCode {
    let reason = e.io_error().map_or_else(|| e.to_string(), os_message);
    eprintln!("error: cannot listen on {at}: {reason}");
    ExitCode::FAILURE
}

/// What stdin commands act on.
struct Control {
    health: healthz::Health,
    targets: Vec<healthz::Target>,
    liveness_targets: Vec<healthz::LivenessTarget>,
    heartbeats: Vec<healthz::Heartbeat>,
    /// Each demo worker's name, and how to tell it to panic.
    threads: Vec<(String, mpsc::Sender<()>)>,
    drain_delay: Duration,
}

/// A demo worker thread holding `guard`: it waits for a word to panic, and
/// finishes on purpose when serve stops (its sender is dropped).
fn worker(name: &str, guard: healthz::ThreadGuard) -> io::Result<(String, mpsc::Sender<()>)> {
    let (tell, told) = mpsc::channel::<()>();
    let who = name.to_string();
    std::thread::Builder::new()
        .name(format!("worker-{name}"))
        .spawn(move || {
            if told.recv().is_ok() {
                panic!("worker {who} was told to panic");
            }
            guard.finish();
        })?;
    Ok((name.to_string(), tell))
}

impl Control {
    /// Says where `server` listens, obeys stdin until it says to stop (or
    /// ends), then stops the server.
    fn run<A>(self, server: &healthz::Running<A>, listening: impl std::fmt::Display) -> ExitCode {
        let Control {
            health,
            targets,
            liveness_targets,
            heartbeats,
            threads,
            drain_delay,
        } = self;
        let mut stdout = io::stdout().lock();
        // Scripts wait for this line: it must be first and flushed.
        if writeln!(stdout, "listening on {listening}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            eprintln!("error: cannot write to stdout");
        }

        let mut drain = false;
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[..] {
                ["ready"] => health.ready(),
                ["not-ready"] => health.not_ready(),
                [command @ ("ready" | "not-ready"), name] => {
                    match targets.iter().find(|t| t.name() == name) {
                        Some(target) => target.set_ready(command == "ready"),
                        None => eprintln!("unknown target `{name}`; start with --target {name}"),
                    }
                }
                [command @ ("alive" | "not-alive"), name] => {
                    match liveness_targets.iter().find(|t| t.name() == name) {
                        Some(target) => target.set_alive(command == "alive"),
                        None => eprintln!(
                            "unknown liveness target `{name}`; start with --liveness-target {name}"
                        ),
                    }
                }
                ["beat", name] => match heartbeats.iter().find(|h| h.name() == name) {
                    Some(heartbeat) => heartbeat.beat(),
                    None => {
                        eprintln!("unknown heartbeat `{name}`; start with --heartbeat {name}=5s")
                    }
                },
                ["panic", name] => match threads.iter().find(|(n, _)| n == name) {
                    Some((_, tell)) => {
                        let _ = tell.send(());
                    }
                    None => eprintln!("unknown worker thread `{name}`; start with --thread {name}"),
                },
                ["drain"] => {
                    drain = true;
                    break;
                }
                ["shutdown"] => break,
                [] => {}
                _ => eprintln!(
                    "unknown command `{}`; expected ready, not-ready, ready NAME, not-ready NAME, \
                     alive NAME, not-alive NAME, beat NAME, panic NAME, drain or shutdown",
                    line.trim()
                ),
            }
        }

        let stopped = if drain {
            server.drain(drain_delay)
        } else {
            server.shutdown()
        };
        match stopped {
            Ok(()) => ExitCode::SUCCESS,
            // A slow client at shutdown is normal life for a health server: the
            // `stopped` event has said how many were cut; report it and exit cleanly.
            Err(e) if e.is_deadline() => {
                eprintln!("serve: {e}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

/// `Address already in use`, without the ` (os error 98)` that `io::Error` appends.
fn os_message(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) if e.raw_os_error().is_some() => text[..at].to_string(),
        _ => text,
    }
}

/// The duration that follows `option`.
fn duration(option: &str, text: Option<String>) -> Result<Duration, String> {
    let text = text.ok_or(format!("{option} needs a duration"))?;
    parse_duration(&text).ok_or(format!("{option}: bad duration `{text}`"))
}

/// `5s`, `250ms` or a bare number of seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    let (number, millis) = match text.strip_suffix("ms") {
        Some(ms) => (ms, true),
        None => (text.strip_suffix('s').unwrap_or(text), false),
    };
    let n: u64 = number.parse().ok()?;
    Some(if millis {
        Duration::from_millis(n)
    } else {
        Duration::from_secs(n)
    })
}
