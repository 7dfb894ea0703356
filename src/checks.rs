//! Ready-made checks for what takes services down: a dependency that cannot
//! be reached (TCP, HTTP, DNS), and the process's own limits running out
//! (file descriptors, memory, threads, a disk that cannot be written).
//!
//! Each function returns a [`Check`], so its timeout, schedule
//! ([`every`](Check::every)) and thresholds are yours to set, and so is
//! where it goes: [`add_check`](crate::Health::add_check) for readiness,
//! [`add_liveness_check`](crate::Health::add_liveness_check) for liveness.
//! Keep dependencies on readiness only (a database that is down should take
//! the instance out of the load balancer, not restart it); the process's
//! own limits may gate liveness, since a restart is what frees them.
//!
//! Each failure says what was measured against what, in one short line:
//! `312 of 1024 file descriptors free is under 50 %`, `58.2 of 64.0 MiB
//! used (91 %) is over 90 %`. The process's limits are read from Linux's
//! `/proc` and cgroup files; elsewhere those checks cannot measure, and pass.
//!
//! ```
//! use std::time::Duration;
//! use healthz::checks::{self, Free};
//!
//! let health = healthz::Health::new();
//! health.add_check(checks::tcp("database", "127.0.0.1:5432").timeout(Duration::from_millis(500)))?;
//! health.add_check(checks::dns("registry", "localhost"))?;
//! health.add_liveness_check(checks::descriptors("fds", Free::Percent(10)).every(Duration::from_secs(10)))?;
//! health.add_check(checks::memory("memory", 90).every(Duration::from_secs(10)))?;
//! # Ok::<(), healthz::Error>(())
//! ```

use std::fmt;
use std::net::{TcpStream, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Instant;

mod process;

use crate::health::Check;
use crate::probe::{Probe, ProbeError};

/// How much of a limit must stay free for [`descriptors`] to pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Free {
    /// At least this share of the limit, in percent (0 to 100).
    Percent(u8),
    /// At least this many.
    Count(u64),
}

impl fmt::Display for Free {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Free::Percent(p) => write!(f, "{p} %"),
            Free::Count(n) => write!(f, "{n}"),
        }
    }
}

/// Passes when a TCP connection to `addr` (`host:port`, resolved on each
/// run) opens within the check's timeout; the connection is closed at once.
/// A dependency is reachable, nothing more: for its own health, see
/// [`http`].
///
/// ```
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let check = healthz::checks::tcp("db", &listener.local_addr()?.to_string());
/// assert_eq!(check.run_now(), Ok(()));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn tcp(name: &str, addr: &str) -> Check {
    let addr = addr.to_string();
    Check::within(name, move |budget| {
        let until = Instant::now() + budget;
        let targets = addr
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {addr}: {e}"))?;
        let mut last = format!("{addr} resolved to no address");
        for target in targets {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no connection to {addr} within {budget:?}").into());
            }
            match TcpStream::connect_timeout(&target, left) {
                Ok(_) => return Ok(()),
                Err(e) => last = format!("cannot connect to {target}: {e}"),
            }
        }
        Err(last.into())
    })
}

/// Passes when the dependency's own health endpoint at `url` (as
/// [`Probe::new`] takes it: `http://host:port/path`) answers within the
/// check's timeout with a status in `expect` (`200..=299`, say, or the
/// kubelet's `200..=399`). Redirects are never followed, on or off the
/// host: a `3xx` is judged by `expect` like any other status.
///
/// # Errors
///
/// A `url` that [`Probe::new`] refuses, at once.
pub fn http(name: &str, url: &str, expect: RangeInclusive<u16>) -> Result<Check, ProbeError> {
    let probe = Probe::new(url)?.expect(expect);
    Ok(probing(name, url.to_string(), probe))
}

/// [`http`] over a Unix domain socket: `path` (`/readyz`) on the server at
/// `socket`.
///
/// # Errors
///
/// A `path` that [`Probe::unix`] refuses, at once.
#[cfg(unix)]
pub fn http_unix(
    name: &str,
    socket: impl AsRef<Path>,
    path: &str,
    expect: RangeInclusive<u16>,
) -> Result<Check, ProbeError> {
    let socket = socket.as_ref();
    let probe = Probe::unix(socket, path)?.expect(expect);
    Ok(probing(
        name,
        format!("unix:{}{path}", socket.display()),
        probe,
    ))
}

fn probing(name: &str, target: String, probe: Probe) -> Check {
    Check::within(name, move |budget| {
        let probe = probe.clone().timeout(budget);
        probe
            .run()
            .map(drop)
            .map_err(|e| format!("GET {target}: {}", crate::error::chain(&e)).into())
    })
}

/// Passes when `host` resolves to at least one address, through the
/// system's resolver (as every connection by name does). A resolver that
/// does not answer fails at the check's timeout.
///
/// ```
/// assert_eq!(healthz::checks::dns("resolver", "localhost").run_now(), Ok(()));
/// assert!(healthz::checks::dns("resolver", "nothing.invalid").run_now().is_err());
/// ```
pub fn dns(name: &str, host: &str) -> Check {
    let host = host.to_string();
    Check::new(name, move || {
        let found = (host.as_str(), 0)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .count();
        match found {
            0 => Err(format!("{host} resolved to no address").into()),
            _ => Ok(()),
        }
    })
}

/// Passes while enough file descriptors stay free: the process's open
/// descriptors (`/proc/self/fd`) against its soft limit (`ulimit -n`,
/// `Max open files` in `/proc/self/limits`). An accept loop that runs out
/// of descriptors is the classic silent outage; this fails first, naming
/// the numbers (`40 of 64 file descriptors free is under 50 %`). With no
/// limit, or off Linux, there is nothing to measure, and it passes.
pub fn descriptors(name: &str, free: Free) -> Check {
    Check::new(name, move || {
        let Some(usage) = linux(|| process::descriptors(Path::new("/")))? else {
            return Ok(());
        };
        let Some(limit) = usage.limit else {
            return Ok(());
        };
        let left = limit.saturating_sub(usage.used);
        let enough = match free {
            Free::Percent(p) => left * 100 >= limit * u64::from(p),
            Free::Count(n) => left >= n,
        };
        match enough {
            true => Ok(()),
            false => Err(format!("{left} of {limit} file descriptors free is under {free}").into()),
        }
    })
}

/// Passes while the process's memory cgroup uses at most `max_percent` of
/// its limit, so readiness sheds traffic (or liveness restarts the
/// process) before the kernel's OOM killer ends it. The cgroup is found
/// through `/proc/self/cgroup` and its controller's mount through
/// `/proc/self/mountinfo`, on cgroup v2 (`memory.current` against the
/// tightest `memory.max` up the tree) and v1 (`memory.usage_in_bytes`
/// against `memory.limit_in_bytes`), on a host and in a container alike.
/// With no limit set (or no memory controller in sight, or off Linux) it
/// passes: nothing can run out. The failure says both numbers: `58.2 of
/// 64.0 MiB used (91 %) is over 90 %`.
///
/// v1 counts the page cache in its usage, as its limit does.
pub fn memory(name: &str, max_percent: u8) -> Check {
    Check::new(name, move || {
        let Some(Some(usage)) = linux(|| process::memory(Path::new("/")))? else {
            return Ok(());
        };
        let Some(limit) = usage.limit else {
            return Ok(());
        };
        if usage.used * 100 <= limit * u64::from(max_percent) {
            return Ok(());
        }
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        Err(format!(
            "{:.1} of {:.1} MiB used ({} %) is over {max_percent} %",
            mib(usage.used),
            mib(limit),
            usage.used * 100 / limit.max(1)
        )
        .into())
    })
}

/// Passes while the process runs at most `max` threads (`Threads:` in
/// `/proc/self/status`): a leak of threads shows here long before the
/// system refuses to make one. Off Linux it passes.
pub fn threads(name: &str, max: u64) -> Check {
    Check::new(name, move || {
        let Some(count) = linux(|| process::threads(Path::new("/")))? else {
            return Ok(());
        };
        match count <= max {
            true => Ok(()),
            false => Err(format!("{count} threads is over {max}").into()),
        }
    })
}

/// Passes when a small file can be created in `dir`, written, synced to
/// disk (`sync_all`) and removed: it catches a full disk, a read-only
/// remount and lost permissions. The file (`.healthz-check-PID-N`) is
/// removed whatever fails after it is created, so nothing is left behind.
///
/// ```
/// let check = healthz::checks::writable("scratch", std::env::temp_dir());
/// assert_eq!(check.run_now(), Ok(()));
/// ```
pub fn writable(name: &str, dir: impl Into<PathBuf>) -> Check {
    let dir = dir.into();
    Check::new(name, move || {
        process::write_file(&dir)
            .map_err(|e| format!("cannot write to {}: {e}", dir.display()).into())
    })
}

/// What `read` says on Linux; `None` elsewhere, where there is no `/proc`.
fn linux<T>(read: impl FnOnce() -> Result<T, String>) -> Result<Option<T>, String> {
    if cfg!(target_os = "linux") {
        read().map(Some)
    } else {
        Ok(None)
    }
}
