//! The project's own benchmark: std only, loopback only, bounded in time.
//!
//! ```text
//! cargo run --release --example bench            # the full run, about a minute
//! cargo run --release --example bench -- --quick # a few seconds
//! cargo run --release --example bench -- --unix  # the same over a Unix socket
//! cargo run --release --example bench -- --checks # what each ready-made check costs
//! ```
//!
//! It runs the server in a child process (this same binary with `--child`,
//! which serves like `examples/serve.rs`), so that the server's CPU time,
//! memory, threads and context switches are read from `/proc/PID` apart from
//! the load generator's. Prints a table, then one machine-readable line per
//! figure: `bench <name> <value> <unit>`.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n";
const CLOSE_REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";

struct Plan {
    run: Duration,
    idle: Duration,
    shutdown_runs: usize,
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child(args.get(1).map_or("127.0.0.1:0", String::as_str));
    }
    if args.iter().any(|a| a == "--checks") {
        let mut figures = Figures::default();
        check_costs(&mut figures)?;
        figures.print();
        return Ok(());
    }
    let unix = args.iter().any(|a| a == "--unix");
    let plan = if args.iter().any(|a| a == "--quick") {
        Plan {
            run: Duration::from_millis(700),
            idle: Duration::from_secs(1),
            shutdown_runs: 3,
        }
    } else {
        Plan {
            run: Duration::from_secs(5),
            idle: Duration::from_secs(3),
            shutdown_runs: 5,
        }
    };
    let mut figures = Figures::default();

    let server = Server::start(unix)?;
    figures.add("rss_start", server.rss_kib() as f64 / 1024.0, "MiB");
    figures.add("threads_start", server.threads() as f64, "threads");
    let idle = server.idle_cost(plan.idle);
    figures.add("idle_cpu_0_conns", idle.0, "ms");
    figures.add("idle_ctx_switches_0_conns", idle.1, "switches");

    for conns in [1, 16, 64] {
        let run = server.load(conns, plan.run, true)?;
        run.report(&mut figures, &format!("keepalive_c{conns}"));
    }
    let run = server.load(16, plan.run, false)?;
    run.report(&mut figures, "close_c16");

    let held = hold(&server.addr, 500)?;
    figures.add("rss_500_idle", server.rss_kib() as f64 / 1024.0, "MiB");
    figures.add("threads_500_idle", server.threads() as f64, "threads");
    let idle = server.idle_cost(plan.idle);
    figures.add("idle_cpu_500_conns", idle.0, "ms");
    figures.add("idle_ctx_switches_500_conns", idle.1, "switches");
    drop(held);
    server.stop()?;

    for idle_conns in [0, 100, 500] {
        let mut times = Vec::new();
        for _ in 0..plan.shutdown_runs {
            let server = Server::start(unix)?;
            let held = hold(&server.addr, idle_conns)?;
            times.push(server.stop()?.as_secs_f64() * 1000.0);
            drop(held);
        }
        times.sort_by(f64::total_cmp);
        figures.add(
            &format!("shutdown_{idle_conns}_idle_median"),
            times[times.len() / 2],
            "ms",
        );
        figures.add(
            &format!("shutdown_{idle_conns}_idle_max"),
            times[times.len() - 1],
            "ms",
        );
    }
    figures.add("heartbeat_beat", beat_cost()?, "ns/call");
    check_costs(&mut figures)?;
    figures.print();
    Ok(())
}

/// What one run of each ready-made check costs, in µs: the median of three
/// rounds of `Check::run_now`, against an in-process server on loopback for
/// the dependencies and this process's own `/proc` files for the limits.
fn check_costs(figures: &mut Figures) -> io::Result<()> {
    use healthz::checks::{self, Free};

    let health = healthz::Health::new();
    health.ready();
    let server = healthz::Server::new(health).bind("127.0.0.1:0")?;
    let addr = server.local_addr().to_string();
    let url = format!("http://{addr}/readyz");
    let dir = std::env::temp_dir();
    let http = checks::http("http", &url, 200..=299)
        .map_err(|e| io::Error::new(io::ErrorKind::Other, e))?;
    let runs: [(&str, healthz::Check, u32); 7] = [
        ("tcp", checks::tcp("tcp", &addr), 300),
        ("http", http, 300),
        ("dns_localhost", checks::dns("dns", "localhost"), 300),
        (
            "descriptors",
            checks::descriptors("fds", Free::Percent(10)),
            2000,
        ),
        ("memory", checks::memory("memory", 90), 2000),
        ("threads", checks::threads("threads", 10_000), 2000),
        ("writable", checks::writable("dir", &dir), 100),
    ];
    for (name, check, count) in runs {
        let mut rounds: Vec<f64> = (0..3)
            .map(|_| {
                let started = Instant::now();
                for _ in 0..count {
                    let _ = check.run_now();
                }
                started.elapsed().as_secs_f64() * 1e6 / f64::from(count)
            })
            .collect();
        rounds.sort_by(f64::total_cmp);
        figures.add(&format!("check_{name}"), rounds[1], "us/run");
    }
    server.shutdown().map_err(io::Error::from)
}

/// What one `Heartbeat::beat()` costs a hot loop, in ns: 10 million beats on
/// one thread, the median of three runs.
fn beat_cost() -> io::Result<f64> {
    let health = healthz::Health::new();
    let heartbeat = health
        .heartbeat("bench", Duration::from_secs(60))
        .map_err(io::Error::from)?;
    const BEATS: u32 = 10_000_000;
    let mut runs: Vec<f64> = (0..3)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..BEATS {
                heartbeat.beat();
            }
            started.elapsed().as_nanos() as f64 / f64::from(BEATS)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    Ok(runs[1])
}

/// The server side: the same server as `examples/serve.rs`, ready, stdin-driven.
fn child(addr: &str) -> io::Result<()> {
    let health = healthz::Health::new();
    health.ready();
    let server = healthz::Server::new(health.clone());
    #[cfg(unix)]
    if let Some(path) = addr.strip_prefix("unix:") {
        let server = server.bind_unix(path)?;
        println!("listening on unix:{path}");
        return serve_stdin(&health, &server);
    }
    let server = server.bind(addr)?;
    println!("listening on {}", server.local_addr());
    serve_stdin(&health, &server)
}

fn serve_stdin<A>(health: &healthz::Health, server: &healthz::Running<A>) -> io::Result<()> {
    io::stdout().flush()?;
    for line in io::stdin().lock().lines() {
        match line?.trim() {
            "shutdown" => break,
            "not-ready" => health.not_ready(),
            "ready" => health.ready(),
            _ => {}
        }
    }
    server.shutdown().map_err(io::Error::from)
}

/// Where the server listens.
#[derive(Clone)]
enum Addr {
    Tcp(SocketAddr),
    #[cfg(unix)]
    Unix(std::path::PathBuf),
}

/// A client connection of either kind.
trait Duplex: Read + Write + Send {}
impl<T: Read + Write + Send> Duplex for T {}

impl Addr {
    /// Connects, with `timeout` on reads.
    fn connect(&self, timeout: Duration) -> io::Result<Box<dyn Duplex>> {
        match self {
            Addr::Tcp(addr) => {
                let stream = TcpStream::connect(addr)?;
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(timeout))?;
                Ok(Box::new(stream))
            }
            #[cfg(unix)]
            Addr::Unix(path) => {
                let stream = UnixStream::connect(path)?;
                stream.set_read_timeout(Some(timeout))?;
                Ok(Box::new(stream))
            }
        }
    }
}

struct Server {
    child: Child,
    stdin: ChildStdin,
    addr: Addr,
}

impl Server {
    fn start(unix: bool) -> io::Result<Server> {
        let socket =
            std::env::temp_dir().join(format!("healthz-bench-{}.sock", std::process::id()));
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--child")
            .arg(if unix {
                format!("unix:{}", socket.display())
            } else {
                "127.0.0.1:0".to_string()
            })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line)?;
        let at = line.trim().strip_prefix("listening on ");
        let addr = match at.map(|a| (a.strip_prefix("unix:"), a.parse())) {
            #[cfg(unix)]
            Some((Some(path), _)) => Addr::Unix(path.into()),
            Some((None, Ok(addr))) => Addr::Tcp(addr),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Other,
                    format!("unexpected first line {line:?}"),
                ))
            }
        };
        // Let start-up allocations settle before the first reading.
        thread::sleep(Duration::from_millis(200));
        Ok(Server { child, stdin, addr })
    }

    fn proc(&self, file: &str) -> String {
        fs::read_to_string(format!("/proc/{}/{file}", self.child.id())).unwrap_or_default()
    }

    fn status_field(&self, name: &str) -> u64 {
        let status = self.proc("status");
        let line = status.lines().find(|l| l.starts_with(name)).unwrap_or("");
        line.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn rss_kib(&self) -> u64 {
        self.status_field("VmRSS:")
    }

    fn threads(&self) -> u64 {
        self.status_field("Threads:")
    }

    /// User + system CPU of the whole process, dead threads included, in µs.
    fn cpu_micros(&self) -> f64 {
        let stat = self.proc("stat");
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat: 11 and 12 after the name.
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        ticks as f64 * 10_000.0 // USER_HZ is 100 on Linux
    }

    /// CPU (ms, from schedstat: ns resolution) and voluntary context switches
    /// of all live threads over a window of no traffic.
    fn idle_cost(&self, window: Duration) -> (f64, f64) {
        let sample = || {
            let (mut ns, mut switches) = (0u64, 0u64);
            let dir = format!("/proc/{}/task", self.child.id());
            for task in fs::read_dir(dir).into_iter().flatten().flatten() {
                let schedstat =
                    fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
                ns += schedstat
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let status = fs::read_to_string(task.path().join("status")).unwrap_or_default();
                let line = status
                    .lines()
                    .find(|l| l.starts_with("voluntary_ctxt_switches:"));
                switches += line
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                    .unwrap_or(0);
            }
            (ns, switches)
        };
        let before = sample();
        thread::sleep(window);
        let after = sample();
        (
            after.0.saturating_sub(before.0) as f64 / 1e6,
            after.1.saturating_sub(before.1) as f64,
        )
    }

    /// `conns` client threads, each on its own connection (or a new one per
    /// request), as fast as they can for `run`.
    fn load(&self, conns: usize, run: Duration, keep_alive: bool) -> io::Result<Run> {
        let cpu_before = self.cpu_micros();
        let started = Instant::now();
        let until = started + run;
        let clients: Vec<_> = (0..conns)
            .map(|_| {
                let addr = self.addr.clone();
                thread::spawn(move || client(&addr, until, keep_alive))
            })
            .collect();
        let mut latencies = Vec::new();
        let mut errors = 0;
        for client in clients {
            let (lat, err) = client
                .join()
                .map_err(|_| io::Error::new(io::ErrorKind::Other, "client panicked"))?;
            latencies.extend(lat);
            errors += err;
        }
        let elapsed = started.elapsed();
        let cpu = self.cpu_micros() - cpu_before;
        latencies.sort_unstable();
        Ok(Run {
            requests: latencies.len(),
            elapsed,
            latencies,
            server_cpu_micros: cpu,
            errors,
        })
    }

    /// Asks for shutdown on stdin and times until the process has exited.
    fn stop(mut self) -> io::Result<Duration> {
        let started = Instant::now();
        self.stdin.write_all(b"shutdown\n")?;
        let status = self.child.wait()?;
        let took = started.elapsed();
        if !status.success() {
            return Err(io::Error::new(
                io::ErrorKind::Other,
                format!("server exited with {status}"),
            ));
        }
        Ok(took)
    }
}

/// One client's loop: latencies in µs, and how many requests failed.
fn client(addr: &Addr, until: Instant, keep_alive: bool) -> (Vec<u32>, u64) {
    let mut latencies = Vec::with_capacity(100_000);
    let mut errors = 0;
    let mut buf = [0u8; 1024];
    let mut conn: Option<Box<dyn Duplex>> = None;
    while Instant::now() < until {
        let started = Instant::now();
        let ok = (|| -> io::Result<bool> {
            if conn.is_none() {
                conn = Some(addr.connect(Duration::from_secs(5))?);
            }
            let stream = conn.as_mut().expect("connected");
            stream.write_all(if keep_alive { REQUEST } else { CLOSE_REQUEST })?;
            read_response(stream, &mut buf, keep_alive)
        })();
        match ok {
            Ok(_) => latencies.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32),
            Err(_) => errors += 1,
        }
        // The server closes after `max_requests_per_connection`, and says so.
        if !keep_alive || !matches!(ok, Ok(true)) {
            conn = None;
        }
    }
    (latencies, errors)
}

/// Reads one `200` response: the head, then `Content-Length` bytes (and, when
/// closing, until the server closes). True if the connection stays open.
fn read_response(stream: &mut dyn Duplex, buf: &mut [u8], keep_alive: bool) -> io::Result<bool> {
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buf[filled..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
        if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = &buf[..end];
            let len = find_length(head).unwrap_or(0);
            if filled >= end + 4 + len {
                let open = keep_alive
                    && !head
                        .windows(17)
                        .any(|w| w.eq_ignore_ascii_case(b"connection: close"));
                check_status(&buf[..filled])?;
                if !keep_alive {
                    // Wait for the server's close, as a connection-per-request client does.
                    while stream.read(buf)? > 0 {}
                }
                return Ok(open);
            }
        }
        if filled == buf.len() {
            return Err(io::Error::new(io::ErrorKind::Other, "response too large"));
        }
    }
}

fn check_status(response: &[u8]) -> io::Result<()> {
    if response.starts_with(b"HTTP/1.1 200 ") {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::Other, "not a 200"))
    }
}

fn find_length(head: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-length:"))?;
    line[15..].trim().parse().ok()
}

/// Opens `count` connections, one request each, and holds them idle.
fn hold(addr: &Addr, count: usize) -> io::Result<Vec<Box<dyn Duplex>>> {
    let mut buf = [0u8; 1024];
    (0..count)
        .map(|_| {
            let mut stream = addr.connect(Duration::from_secs(5))?;
            stream.write_all(REQUEST)?;
            read_response(&mut *stream, &mut buf, true)?;
            Ok(stream)
        })
        .collect()
}

struct Run {
    requests: usize,
    elapsed: Duration,
    latencies: Vec<u32>,
    server_cpu_micros: f64,
    errors: u64,
}

impl Run {
    fn report(&self, figures: &mut Figures, name: &str) {
        let percentile = |p: f64| {
            let at = ((self.latencies.len() as f64 * p) as usize)
                .min(self.latencies.len().saturating_sub(1));
            self.latencies.get(at).copied().unwrap_or(0) as f64
        };
        figures.add(
            &format!("{name}_rps"),
            self.requests as f64 / self.elapsed.as_secs_f64(),
            "req/s",
        );
        figures.add(&format!("{name}_p50"), percentile(0.50), "us");
        figures.add(&format!("{name}_p99"), percentile(0.99), "us");
        figures.add(&format!("{name}_max"), percentile(1.0), "us");
        let per_request = self.server_cpu_micros / self.requests.max(1) as f64;
        figures.add(&format!("{name}_server_cpu_per_req"), per_request, "us");
        figures.add(&format!("{name}_errors"), self.errors as f64, "errors");
    }
}

#[derive(Default)]
struct Figures(Vec<(String, f64, &'static str)>);

impl Figures {
    fn add(&mut self, name: &str, value: f64, unit: &'static str) {
        eprintln!("  {name}: {value:.1} {unit}");
        self.0.push((name.to_string(), value, unit));
    }

    fn print(&self) {
        println!("| figure | value | unit |");
        println!("|---|---:|---|");
        for (name, value, unit) in &self.0 {
            println!("| {name} | {value:.1} | {unit} |");
        }
        println!();
        for (name, value, unit) in &self.0 {
            println!("bench {name} {value:.3} {unit}");
        }
    }
}
