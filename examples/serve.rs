//! A health server driven from stdin: the README's main job, and the contract
//! that benchmarks and scripts drive.
//!
//! ```text
//! cargo run --example serve -- --addr 127.0.0.1:8080
//! ```
//!
//! Run with `--help` for the whole contract.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

const HELP: &str = "\
serve: a healthz server controlled through stdin

USAGE:
    serve [--addr HOST:PORT] [--not-ready]

OPTIONS:
    --addr HOST:PORT   where to listen (default 0.0.0.0:8080, Dapr's healthz port;
                       port 0 picks a free one)
    --not-ready        start not ready (the default is ready)
    -h, --help         print this help

Once bound, prints `listening on HOST:PORT` (the real address) as its first line
on stdout. GET /healthz then answers 200 when ready and 503 when not.

STDIN COMMANDS, one per line:
    ready              mark the service ready
    not-ready          mark the service not ready
    shutdown           shut down gracefully and exit
End of input also shuts down. Events (listening, readiness changes, shutdown)
are printed to stderr.

EXIT STATUS:
    0  clean shutdown
    1  could not listen, or shutdown had to cut connections
    2  usage error
";

struct Options {
    addr: String,
    ready: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        addr: "0.0.0.0:8080".to_string(),
        ready: true,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--not-ready" => options.ready = false,
            "--addr" => options.addr = args.next().ok_or("--addr needs HOST:PORT")?,
            _ => match arg.strip_prefix("--addr=") {
                Some(addr) => options.addr = addr.to_string(),
                None => return Err(format!("unknown argument `{arg}`")),
            },
        }
    }
    Ok(Some(options))
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\n(run with --help for usage)");
            return ExitCode::from(2);
        }
    };

    let health = healthz::Health::new();
    health.set_ready(options.ready);
    let server = healthz::Server::new(health.clone())
        .on_event(|event| eprintln!("healthz: {event}"))
        .bind(&options.addr);
    let server = match server {
        Ok(server) => server,
        Err(e) => {
            eprintln!(
                "error: cannot listen on {}: {}",
                options.addr,
                os_message(&e)
            );
            return ExitCode::FAILURE;
        }
    };

    let mut stdout = io::stdout().lock();
    // Scripts wait for this line: it must be first and flushed.
    if writeln!(stdout, "listening on {}", server.local_addr())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        eprintln!("error: cannot write to stdout");
    }

    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "ready" => health.ready(),
            "not-ready" => health.not_ready(),
            "shutdown" => break,
            "" => {}
            other => eprintln!("unknown command `{other}`; expected ready, not-ready or shutdown"),
        }
    }

    match server.shutdown() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
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
