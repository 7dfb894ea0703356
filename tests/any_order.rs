//! One truth in any order of calls. Random sequences of calls on a `Health`
//! (the flag, targets added and flipped, on-request checks added whose answer
//! flips, liveness targets and checks, thread guards and heartbeats, and the
//! server bound at a random point) are checked against a small model of what
//! readiness and liveness are, and which items fail.
//!
//! After every call, without probing first, the latest `STATUS=` a real
//! notify socket received must name exactly the model's failing items, and
//! `READY=1` must have come once the model was ready. At some steps the
//! probes are then asked too, and must agree: `/readyz`, `/readyz?verbose`,
//! `/livez`, `/metrics`, `is_ready()`, `is_alive()`, the event hook, and
//! systemd's watchdog (pinged only while alive).
//!
//! Each sequence comes from a seed that is printed on failure and replays it:
//! `HEALTHZ_MODEL_SEED=N cargo test --test any_order`. The normal run tries a
//! few hundred; `HEALTHZ_MODEL_RUNS=N` tries N.
//!
//! `NOTIFY_SOCKET` is process-wide, so this file's tests share one socket
//! (set before any server starts) and take turns with it.
#![cfg(target_os = "linux")]

mod common;

use std::fmt;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::{get, PATIENCE};
use healthz::{Check, Event, Health, Heartbeat, Running, ThreadGuard};

/// How often the notifier reruns on-request checks here (1 s by default).
const RECHECK: Duration = Duration::from_millis(5);
/// systemd's watchdog interval for these servers: a ping every quarter.
const WATCHDOG: Duration = Duration::from_millis(40);
const PING: Duration = Duration::from_millis(10);

/// The socket standing in for systemd's, shared by this file's tests: an
/// abstract one (`@name`, as systemd may give), so no file is left behind.
struct Systemd {
    socket: UnixDatagram,
}

fn systemd() -> MutexGuard<'static, Systemd> {
    static SYSTEMD: OnceLock<Mutex<Systemd>> = OnceLock::new();
    let systemd = SYSTEMD.get_or_init(|| {
        let name = format!("healthz-model-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        // Before any server of this process starts, and only here.
        std::env::set_var("NOTIFY_SOCKET", format!("@{name}"));
        std::env::set_var("WATCHDOG_USEC", WATCHDOG.as_micros().to_string());
        Mutex::new(Systemd { socket })
    });
    systemd.lock().unwrap_or_else(|e| e.into_inner())
}

impl Systemd {
    /// Every datagram waiting now, dropped: a new server starts from silence.
    fn clear(&self) {
        while self.within(Duration::from_millis(1)).is_some() {}
    }

    fn within(&self, within: Duration) -> Option<String> {
        let within = within.max(Duration::from_millis(1));
        self.socket.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 2048];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8(buf[..n].to_vec()).unwrap())
    }
}

/// What one server has told systemd so far.
#[derive(Default, Debug)]
struct Told {
    status: Option<String>,
    ready: usize,
    pings: usize,
}

impl Told {
    /// Takes in one datagram, checking what holds of every message.
    fn take(&mut self, datagram: &str) -> Result<(), String> {
        for line in datagram.lines() {
            if line == "READY=1" {
                self.ready += 1;
                if self.ready > 1 || !datagram.contains("STATUS=ready") {
                    return Err(format!(
                        "READY=1 sent twice or while not ready: {datagram:?}"
                    ));
                }
            } else if let Some(status) = line.strip_prefix("STATUS=") {
                if self.status.as_deref() == Some(status) {
                    return Err(format!("STATUS={status} repeated"));
                }
                self.status = Some(status.to_string());
            } else if line == "WATCHDOG=1" {
                self.pings += 1;
            } else if line != "STOPPING=1" {
                return Err(format!("unexpected message {line:?}"));
            }
        }
        Ok(())
    }

    /// Reads datagrams until the latest status is `want` (within the patience).
    fn await_status(&mut self, systemd: &Systemd, want: &str) -> Result<(), String> {
        let deadline = Instant::now() + PATIENCE;
        while self.status.as_deref() != Some(want) {
            let left = deadline.saturating_duration_since(Instant::now());
            match systemd.within(left) {
                Some(datagram) => self.take(&datagram)?,
                None if left.is_zero() => {
                    return Err(format!(
                        "STATUS={want} expected; the latest is {:?}",
                        self.status
                    ))
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Reads what has come so far, then datagrams until a ping comes
    /// (within the patience).
    fn await_ping(&mut self, systemd: &Systemd) -> Result<(), String> {
        while let Some(datagram) = systemd.within(Duration::ZERO) {
            self.take(&datagram)?;
        }
        let (before, deadline) = (self.pings, Instant::now() + PATIENCE);
        while self.pings == before {
            match systemd.within(deadline.saturating_duration_since(Instant::now())) {
                Some(datagram) => self.take(&datagram)?,
                None => return Err("alive, and no WATCHDOG=1".into()),
            }
        }
        Ok(())
    }

    /// Pings that arrive within `window`.
    fn pings_during(&mut self, systemd: &Systemd, window: Duration) -> Result<usize, String> {
        let before = self.pings;
        let until = Instant::now() + window;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(self.pings - before);
            }
            if let Some(datagram) = systemd.within(left) {
                self.take(&datagram)?;
            }
        }
    }
}

/// xorshift64*: a seeded sequence of numbers, the same on every run.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// Which verdict an item gates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Readiness = 0,
    Liveness = 1,
}

/// One call a user can make.
#[derive(Clone, Debug)]
enum Op {
    Bind,
    Flag(bool),
    AddTarget(Family),
    SetTarget(Family, usize, bool),
    /// Every handle to a target gone, and the component started anew.
    DropTarget(Family, usize),
    RestartTarget(Family, usize),
    AddCheck(Family, bool),
    SetCheck(Family, usize, bool),
    AddGuard,
    DropGuard(usize),
    FinishGuard(usize),
    /// A supervisor's restart: a new guard under a dead one's name.
    RestartGuard(usize),
    AddHeartbeat,
    RetireHeartbeat(usize),
    /// Ask every probe, and check that they agree with the model.
    Probe,
}

/// What readiness and liveness must be: the flag, and each registered item
/// of each family, in the order registered, and whether it passes.
#[derive(Default)]
struct Model {
    flag: bool,
    items: [Vec<(String, bool)>; 2],
}

impl Model {
    fn failing_readiness(&self) -> Vec<&str> {
        let flag = (!self.flag).then_some("ready");
        let items = self.items[0].iter().filter(|i| !i.1).map(|i| i.0.as_str());
        flag.into_iter().chain(items).collect()
    }

    fn ready(&self) -> bool {
        self.failing_readiness().is_empty()
    }

    fn alive(&self) -> bool {
        self.items[1].iter().all(|i| i.1)
    }

    /// The `STATUS=` line systemd must have last.
    fn status(&self) -> String {
        let failing = self.failing_readiness();
        if failing.is_empty() {
            "ready".to_string()
        } else {
            format!("not ready (failing: {})", failing.join(", "))
        }
    }

    fn set(&mut self, family: Family, name: &str, passes: bool) {
        let items = &mut self.items[family as usize];
        items.iter_mut().find(|i| i.0 == name).unwrap().1 = passes;
    }

    fn add(&mut self, family: Family, name: &str, passes: bool) {
        self.items[family as usize].push((name.to_string(), passes));
    }

    fn remove(&mut self, family: Family, name: &str) {
        self.items[family as usize].retain(|i| i.0 != name);
    }
}

/// A target of either family, as its component holds it: a way to flip it.
type Flip = Box<dyn Fn(bool)>;

/// The real side: the handles a user holds, each under its name.
struct Real {
    health: Health,
    server: Option<Running>,
    /// The last readiness and liveness the event hook heard (or, before
    /// any event, what the state said as the hook was registered).
    heard: Arc<Mutex<(bool, bool)>>,
    /// Per family.
    targets: [Vec<(String, Flip)>; 2],
    dropped_targets: [Vec<String>; 2],
    checks: [Vec<(String, Arc<AtomicBool>)>; 2],
    guards: Vec<(String, ThreadGuard)>,
    /// Names whose guards died, free to take again.
    dead_guards: Vec<String>,
    heartbeats: Vec<(String, Heartbeat)>,
    names: usize,
}

impl Real {
    fn new() -> Real {
        Real {
            health: Health::new(),
            server: None,
            heard: Arc::default(),
            targets: Default::default(),
            dropped_targets: Default::default(),
            checks: Default::default(),
            guards: Vec::new(),
            dead_guards: Vec::new(),
            heartbeats: Vec::new(),
            names: 0,
        }
    }

    fn name(&mut self, prefix: &str) -> String {
        self.names += 1;
        format!("{prefix}{}", self.names)
    }

    /// Registers a target of `family` under `name`; returns how it starts.
    fn target(&mut self, family: Family, name: String) -> Result<bool, String> {
        let health = &self.health;
        let (flip, starts): (Flip, bool) = match family {
            Family::Readiness => {
                let target = health.target(&name).map_err(|e| e.to_string())?;
                (Box::new(move |on| target.set_ready(on)), false)
            }
            Family::Liveness => {
                let target = health.liveness_target(&name).map_err(|e| e.to_string())?;
                (Box::new(move |on| target.set_alive(on)), true)
            }
        };
        self.targets[family as usize].push((name, flip));
        Ok(starts)
    }
}

/// A check whose answer the test sets.
fn answering(name: &str, answer: bool) -> (Check, Arc<AtomicBool>) {
    let flag = Arc::new(AtomicBool::new(answer));
    let read = flag.clone();
    let check = Check::new(name, move || {
        if read.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err("answered no".into())
        }
    });
    (check, flag)
}

/// Picks the next call, from what exists so far.
fn pick(rng: &mut Rng, real: &Real) -> Op {
    let bound = real.server.is_some();
    loop {
        let family = if rng.coin() {
            Family::Readiness
        } else {
            Family::Liveness
        };
        let (targets, checks) = (
            &real.targets[family as usize],
            &real.checks[family as usize],
        );
        let dropped = &real.dropped_targets[family as usize];
        let op = match rng.below(15) {
            0 | 1 => Op::Flag(rng.coin()),
            2 => Op::AddTarget(family),
            3 | 4 if !targets.is_empty() => {
                Op::SetTarget(family, rng.below(targets.len()), rng.coin())
            }
            5 => Op::AddCheck(family, rng.coin()),
            6 | 7 if !checks.is_empty() => {
                Op::SetCheck(family, rng.below(checks.len()), rng.coin())
            }
            8 => Op::AddGuard,
            9 if !real.guards.is_empty() => match rng.coin() {
                true => Op::DropGuard(rng.below(real.guards.len())),
                false => Op::FinishGuard(rng.below(real.guards.len())),
            },
            10 if !real.heartbeats.is_empty() && rng.coin() => {
                Op::RetireHeartbeat(rng.below(real.heartbeats.len()))
            }
            10 => Op::AddHeartbeat,
            11 if bound => Op::Probe,
            12 if !real.dead_guards.is_empty() => {
                Op::RestartGuard(rng.below(real.dead_guards.len()))
            }
            13 if !targets.is_empty() => Op::DropTarget(family, rng.below(targets.len())),
            14 if !dropped.is_empty() => Op::RestartTarget(family, rng.below(dropped.len())),
            _ => continue,
        };
        return op;
    }
}

/// Makes one call on both sides.
fn apply(op: &Op, real: &mut Real, model: &mut Model) -> Result<(), String> {
    let health = real.health.clone();
    match *op {
        Op::Bind => {
            // What the hook would have heard so far, had it been there.
            *real.heard.lock().unwrap() = (health.is_ready(), health.is_alive());
            let heard = real.heard.clone();
            let server = healthz::Server::new(health.clone())
                .notify_systemd(true)
                .notify_recheck(RECHECK)
                .metrics(true)
                .on_event(move |event| {
                    let mut heard = heard.lock().unwrap();
                    match event {
                        Event::ReadinessChanged { ready, .. } => heard.0 = *ready,
                        Event::LivenessChanged { alive, .. } => heard.1 = *alive,
                        _ => {}
                    }
                })
                .bind("127.0.0.1:0")
                .map_err(|e| e.to_string())?;
            real.server = Some(server);
        }
        Op::Flag(on) => {
            health.set_ready(on);
            model.flag = on;
        }
        Op::AddTarget(family) => {
            let name = real.name("t");
            let starts = real.target(family, name.clone())?;
            model.add(family, &name, starts);
        }
        Op::SetTarget(family, i, on) => {
            let (name, flip) = &real.targets[family as usize][i];
            flip(on);
            model.set(family, name, on);
        }
        Op::DropTarget(family, i) => {
            // The target stays as it was, its name free again.
            let (name, _) = real.targets[family as usize].remove(i);
            real.dropped_targets[family as usize].push(name);
        }
        Op::RestartTarget(family, i) => {
            let name = real.dropped_targets[family as usize].remove(i);
            let starts = real.target(family, name.clone())?;
            model.set(family, &name, starts);
        }
        Op::AddCheck(family, answer) => {
            let name = real.name("c");
            let (check, flag) = answering(&name, answer);
            match family {
                Family::Readiness => health.add_check(check),
                Family::Liveness => health.add_liveness_check(check),
            }
            .map_err(|e| e.to_string())?;
            real.checks[family as usize].push((name.clone(), flag));
            model.add(family, &name, answer);
        }
        Op::SetCheck(family, i, answer) => {
            let (name, flag) = &real.checks[family as usize][i];
            flag.store(answer, Ordering::SeqCst);
            model.set(family, name, answer);
        }
        Op::AddGuard => {
            let name = real.name("g");
            let guard = health.thread_guard(&name).map_err(|e| e.to_string())?;
            real.guards.push((name.clone(), guard));
            model.add(Family::Liveness, &name, true);
        }
        Op::DropGuard(i) => {
            let (name, guard) = real.guards.remove(i);
            drop(guard); // without finish(): its thread "died"
            model.set(Family::Liveness, &name, false);
            real.dead_guards.push(name);
        }
        Op::RestartGuard(i) => {
            let name = real.dead_guards.remove(i);
            let guard = health.thread_guard(&name).map_err(|e| e.to_string())?;
            model.set(Family::Liveness, &name, true);
            real.guards.push((name, guard));
        }
        Op::FinishGuard(i) => {
            let (name, guard) = real.guards.remove(i);
            guard.finish();
            model.remove(Family::Liveness, &name);
        }
        Op::AddHeartbeat => {
            let name = real.name("h");
            let period = Duration::from_secs(3600);
            let heartbeat = health.heartbeat(&name, period).map_err(|e| e.to_string())?;
            real.heartbeats.push((name.clone(), heartbeat));
            model.add(Family::Liveness, &name, true);
        }
        Op::RetireHeartbeat(i) => {
            let (name, heartbeat) = real.heartbeats.remove(i);
            heartbeat.retire();
            model.remove(Family::Liveness, &name);
        }
        Op::Probe => {}
    }
    Ok(())
}

/// The probes, each of which must agree with the model.
fn probe(real: &Real, model: &Model, told: &mut Told, systemd: &Systemd) -> Result<(), String> {
    let addr = real.server.as_ref().unwrap().local_addr();
    let (ready, alive) = (model.ready(), model.alive());
    let expect = |what: &str, got: bool, want: bool| {
        if got == want {
            Ok(())
        } else {
            Err(format!("{what} says {got}, the model {want}"))
        }
    };
    expect("/readyz", get(addr, "/readyz").status == 200, ready)?;
    let verbose = get(addr, "/readyz?verbose");
    let failing: Vec<String> = verbose
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("[-]"))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    if failing != model.failing_readiness() {
        return Err(format!(
            "/readyz?verbose fails {failing:?}, the model {:?}",
            model.failing_readiness()
        ));
    }
    expect("/livez", get(addr, "/livez").status == 200, alive)?;
    let metrics = get(addr, "/metrics");
    let sample = |line: &str| {
        metrics
            .text()
            .lines()
            .find_map(|l| l.strip_prefix(line).map(|v| v.trim() == "1"))
    };
    expect(
        "healthz_ready",
        sample("healthz_ready ").unwrap_or(false),
        ready,
    )?;
    expect(
        "healthz_alive",
        sample("healthz_alive ").unwrap_or(false),
        alive,
    )?;
    for (kind, items) in ["readyz", "livez"].iter().zip(&model.items) {
        for (name, passes) in items {
            let line = format!("healthz_check{{name=\"{name}\",type=\"{kind}\"}} ");
            match sample(&line) {
                Some(got) => expect(&line, got, *passes)?,
                None => return Err(format!("/metrics has no {line}")),
            }
        }
    }
    expect("is_ready()", real.health.is_ready(), ready)?;
    expect("is_alive()", real.health.is_alive(), alive)?;
    // Every change's event was delivered before the call that made it returned.
    let heard = *real.heard.lock().unwrap();
    expect("the event hook's readiness", heard.0, ready)?;
    expect("the event hook's liveness", heard.1, alive)?;
    // The watchdog: pings while alive; while not, none after a period's
    // grace (for a ping decided before the change).
    if alive {
        told.await_ping(systemd)
    } else {
        told.pings_during(systemd, PING)?;
        let pings = told.pings_during(systemd, 2 * PING)?;
        expect("the watchdog's pings", pings > 0, alive)
    }
}

struct Failure {
    seed: u64,
    ops: Vec<Op>,
    what: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} (replay: HEALTHZ_MODEL_SEED={} cargo test --test any_order)",
            self.seed, self.seed
        )?;
        for (n, op) in self.ops.iter().enumerate() {
            writeln!(f, "  {n:2}. {op:?}")?;
        }
        write!(f, "after the last call: {}", self.what)
    }
}

/// One random sequence, checked against the model after every call.
fn run(seed: u64, systemd: &Systemd) -> Result<(), Failure> {
    let mut rng = Rng::new(seed);
    let length = 4 + rng.below(16);
    let bind_at = rng.below(length);
    let mut real = Real::new();
    let mut model = Model::default();
    let mut told = Told::default();
    let mut ops = Vec::new();
    systemd.clear();
    for step in 0..length {
        let op = if step == bind_at {
            Op::Bind
        } else {
            pick(&mut rng, &real)
        };
        ops.push(op.clone());
        let fail = |what: String| Failure {
            seed,
            ops: ops.clone(),
            what,
        };
        apply(&op, &mut real, &mut model).map_err(fail)?;
        if real.server.is_none() {
            continue;
        }
        told.await_status(systemd, &model.status()).map_err(fail)?;
        if model.ready() && told.ready != 1 {
            return Err(fail("ready, and no READY=1".into()));
        }
        if matches!(op, Op::Probe) {
            probe(&real, &model, &mut told, systemd).map_err(fail)?;
        }
    }
    if let Some(server) = real.server.take() {
        server.shutdown().map_err(|e| Failure {
            seed,
            ops,
            what: format!("shutdown: {e}"),
        })?;
    }
    Ok(())
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn systemd_and_every_probe_agree_with_the_model_whatever_the_order_of_calls() {
    let systemd = systemd();
    let seeds: Vec<u64> = match env_number("HEALTHZ_MODEL_SEED") {
        Some(seed) => vec![seed],
        None => {
            let runs = env_number("HEALTHZ_MODEL_RUNS").unwrap_or(200);
            let base = env_number("HEALTHZ_MODEL_BASE").unwrap_or(1);
            (base..base + runs).collect()
        }
    };
    for seed in seeds {
        if let Err(failure) = run(seed, &systemd) {
            panic!("{failure}");
        }
    }
}

/// The README's order (bind, then add a check, then `ready()`), with nobody
/// probing: `READY=1` must come every time, with the default recheck.
#[test]
fn the_readmes_order_sends_ready_without_any_probe() {
    let systemd = systemd();
    for run in 0..100 {
        systemd.clear();
        let health = Health::new();
        let server = healthz::Server::new(health.clone())
            .notify_systemd(true)
            .bind("127.0.0.1:0")
            .unwrap();
        health.add_check(Check::new("database", || Ok(()))).unwrap();
        health.ready();
        let mut told = Told::default();
        if let Err(what) = told.await_status(&systemd, "ready") {
            panic!("run {run}: {what}");
        }
        assert_eq!(
            told.ready, 1,
            "run {run}: READY=1 with the first STATUS=ready"
        );
        server.shutdown().unwrap();
    }
}
