//! The server: its configuration, and its lifecycle from bind to the last
//! joined thread. Shutdown is one sequence, read top to bottom in
//! [`Lifecycle::shut_down`].

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
#[cfg(unix)]
use std::os::unix::net::SocketAddr as UnixSocketAddr;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::accept::{Acceptors, Spares};
use crate::conn::{Service, Settings};
use crate::counters::Counters;
use crate::error::{at_most_a_year, invalid, positive, Error};
use crate::event::{Event, Events, Hook};
use crate::health::{Health, Watch};
use crate::notify::Systemd;
use crate::registry::Registry;
use crate::route::{FailureBody, FailureStatus, Routes, SuccessStatus};
use crate::shutdown::budget::{self, FORCE_GRACE, WAIT_MARGIN};
use crate::shutdown::ShutdownToken;
#[cfg(unix)]
use crate::socket::bind_unix;
use crate::socket::{ListenSocket, Listener, SocketFile};
use crate::sync::{lock, Latch, SetOnDrop};

/// A health server being configured: builder methods, then
/// [`bind`](Server::bind), [`listen`](Server::listen) or [`run`](Server::run).
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use std::time::Duration;
///
/// let health = healthz::Health::new();
/// let server = healthz::Server::new(health.clone())
///     .shutdown_timeout(Duration::from_secs(2))
///     .on_event(|event| eprintln!("healthz: {event}"))
///     .bind("127.0.0.1:0")?;
/// health.ready();
/// println!("probe me at http://{}/healthz", server.local_addr());
/// server.shutdown()?;
/// # Ok(())
/// # }
/// ```
///
/// Every builder method returns the server it configured; dropping that is
/// a compile-time warning:
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// let server = healthz::Server::new(healthz::Health::new());
/// server.metrics(true); // configures a server that is dropped here
/// let _ = server;
/// ```
#[must_use = "a server serves nothing until bound: call bind, bind_unix, listen or run"]
pub struct Server {
    health: Health,
    config: Config,
    hook: Option<Hook>,
}

/// Every limit and timeout; see the builder methods for meanings and defaults.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub conn: Settings,
    pub routes: Routes,
    pub shutdown_timeout: Duration,
    pub max_connections: usize,
    pub drain_delay: Duration,
    pub spares: Spares,
    /// Of every thread the server starts.
    pub stack_size: usize,
    pub systemd: bool,
    /// How often systemd's readiness report runs on-request checks afresh.
    pub notify_recheck: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            conn: Settings::default(),
            routes: Routes::default(),
            shutdown_timeout: Duration::from_secs(5),
            max_connections: 1024,
            drain_delay: Duration::ZERO,
            spares: Spares::default(),
            stack_size: 128 * 1024,
            systemd: false,
            notify_recheck: Duration::from_secs(1),
        }
    }
}

impl Config {
    /// Each part checks its own settings; these are the server's.
    fn validate(&self) -> io::Result<()> {
        self.conn.validate()?;
        self.spares.validate()?;
        at_most_a_year("shutdown_timeout", self.shutdown_timeout)?;
        at_most_a_year("drain_delay", self.drain_delay)?;
        positive("notify_recheck", self.notify_recheck)?;
        if self.max_connections == 0 {
            return Err(invalid("max_connections must be at least 1"));
        }
        if !(64 * 1024..=256 * 1024 * 1024).contains(&self.stack_size) {
            return Err(invalid(
                "thread_stack_size must be between 64 KiB and 256 MiB",
            ));
        }
        self.routes.validate()
    }
}

/// The builder methods that each set one field of the server's
/// configuration (checked when the server binds), written once:
/// `name(argument: Type) => field.path = value;` under its docs.
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident($arg:ident: $ty:ty) => $($field:ident).+ = $value:expr;)*) => {
        $(
            $(#[$doc])*
            #[must_use = "the builder returns the configured server: chain it, then bind"]
            pub fn $name(mut self, $arg: $ty) -> Server {
                self.config.$($field).+ = $value;
                self
            }
        )*
    };
}

impl Server {
    /// A server for `health`, with the default limits.
    pub fn new(health: Health) -> Server {
        Server {
            health,
            config: Config::default(),
            hook: None,
        }
    }

    /// Calls `hook` for every [`Event`]: listening, shutting down, stopped,
    /// errors, rejections, readiness changes. Silent by default.
    ///
    /// The hook runs on the server's threads (and on the thread that flips
    /// readiness), so keep it short, and do not shut the server down from it
    /// (trigger a [`ShutdownToken`] instead); a panic in it is contained and
    /// loses only that event. The health state's events (readiness and
    /// liveness changes, checks failing and passing) come one at a time, in
    /// the order of the changes, whichever threads make them: the last
    /// `ReadinessChanged` heard is the state now.
    #[must_use = "the builder returns the configured server: chain it, then bind"]
    pub fn on_event(mut self, hook: impl Fn(&Event) + Send + Sync + 'static) -> Server {
        self.hook = Some(Arc::new(hook));
        self
    }

    setters! {
        /// Time allowed to receive a whole request head, counted from its first byte
        /// (or from the connection's accept, for its first request), however it
        /// trickles in. Default 10 s. Past it the client gets 408 and is closed.
        request_timeout(timeout: Duration) => conn.request_timeout = timeout;

        /// Time a kept-alive connection may sit idle between requests. Default 30 s.
        idle_timeout(timeout: Duration) => conn.idle_timeout = timeout;

        /// Time allowed for writing one batch of responses to a client that does not
        /// read. Default 10 s.
        write_timeout(timeout: Duration) => conn.write_timeout = timeout;

        /// How long shutdown waits for in-flight requests before closing them by
        /// force and returning an error. Default 5 s, as Dapr's health server.
        ///
        /// Zero means "do not wait for requests in flight": they are cut at once.
        /// The server's own threads (in `accept`, or on idle connections) still get
        /// a moment (250 ms at most) to leave, so a shutdown with nothing in flight
        /// returns `Ok` and has joined every thread, whatever the timeout.
        shutdown_timeout(timeout: Duration) => shutdown_timeout = timeout;

        /// Most connections served at once, each on its own thread. Default 1024.
        ///
        /// At the cap, a new connection is always taken, and the connection that
        /// has waited longest on its client is closed to make room: idle
        /// keep-alive connections and connections trickling in a request first;
        /// a connection being answered only if every connection is, and then the
        /// one whose client has not read its answer for longest. So a fresh probe
        /// is answered however many idle, slow or hostile clients hold connections.
        max_connections(max: usize) => max_connections = max;

        /// Requests served on one connection before it is closed. Default 10 000.
        max_requests_per_connection(max: u64) => conn.max_requests = max;

        /// Largest request body read (and discarded); larger ones get 413 and a
        /// close. Default 64 KiB.
        max_body(bytes: u64) => conn.max_body = bytes;

        /// Longest request line; longer gets 414. Default 4 KiB.
        max_request_line(bytes: usize) => conn.head.max_line = bytes;

        /// Longest request head (request line and headers); longer gets 431. It
        /// also bounds each connection's receive buffer, which starts at 1 KiB and
        /// grows only for a head that needs it. Default 8 KiB, at most 1 MiB.
        max_request_head(bytes: usize) => conn.head.max_head = bytes;

        /// Most header fields in a request; more gets 431. Default 64.
        max_headers(count: usize) => conn.head.max_headers = count;

        /// Serves the endpoints under `prefix`: `.path_prefix("/v1.0")` answers
        /// `/v1.0/healthz`, `/v1.0/readyz` and `/v1.0/livez` (and nothing else).
        path_prefix(prefix: &str) => routes.prefix = prefix.to_string();

        /// The status of a passing plain probe: [`SuccessStatus::Ok`] (200, the
        /// default) or [`SuccessStatus::NoContent`] (204, no body); `?verbose`
        /// and JSON answers still use 200. Keep 200 for load balancers that
        /// accept only 200, such as AWS ALB by default.
        ///
        /// A type rather than a number, so no other status can be configured:
        ///
        /// ```compile_fail
        /// healthz::Server::new(healthz::Health::new()).success_status(201);
        /// ```
        success_status(status: SuccessStatus) => routes.success = status;

        /// The status of a failing probe: [`FailureStatus::ServiceUnavailable`]
        /// (503, the default; every prober reads it as "not now") or
        /// [`FailureStatus::InternalServerError`] (500, daprd's).
        failure_status(status: FailureStatus) => routes.failure = status;

        /// The body of a failing plain probe. Default [`FailureBody::Text`].
        ///
        /// daprd's own flavour is one configuration:
        ///
        /// ```
        /// # fn main() -> std::io::Result<()> {
        /// let daprd_like = healthz::Server::new(healthz::Health::new())
        ///     .path_prefix("/v1.0")
        ///     .success_status(healthz::SuccessStatus::NoContent)
        ///     .failure_status(healthz::FailureStatus::InternalServerError)
        ///     .failure_body(healthz::FailureBody::DaprJson)
        ///     .bind("127.0.0.1:0")?;
        /// # Ok(())
        /// # }
        /// ```
        failure_body(body: FailureBody) => routes.failure_body = body;

        /// Whether check failure reasons appear in `?verbose` and JSON bodies.
        /// Default false: bodies say `reason withheld` and reasons go to the event
        /// hook only ([`Event::CheckFailed`]), since probes may come from anywhere.
        show_reasons(show: bool) => routes.show_reasons = show;

        /// Drains before every shutdown: when shutdown is asked for, readiness
        /// fails at once ([`Health::drain`]) while liveness keeps passing and the
        /// server keeps serving for `delay`, so load balancers stop sending
        /// traffic before the process goes; then the usual shutdown follows.
        /// Default 0 (no drain). See also [`Running::drain`].
        drain_delay(delay: Duration) => drain_delay = delay;

        /// Most threads kept waiting in `accept` for the next connection. Each
        /// connection has a thread to itself; when it ends, the thread goes back to
        /// `accept`, or ends if this many threads wait there already. Waiting
        /// threads cost no CPU, and a connection that finds one costs no thread
        /// creation and no hand-off between threads. Default 16, at least 1.
        ///
        /// Spares are for bursts: see [`spare_thread_timeout`](Server::spare_thread_timeout).
        spare_threads(max: usize) => spares.max = max;

        /// How long a thread waits in `accept` for a connection before it ends,
        /// unless it is the last one waiting: after a burst, once connections
        /// have been quiet this long, every waiting thread but one has ended, so
        /// the server's footprint at rest (threads, memory) comes back to where
        /// it started. Default 5 s.
        ///
        /// The kernel times `accept` out (a receive timeout on the listening
        /// socket): no timer, no wake-up. That is Linux's; on other systems
        /// `accept` cannot time out, and spare threads (at most
        /// [`spare_threads`](Server::spare_threads)) wait until shutdown.
        spare_thread_timeout(quiet: Duration) => spares.quiet = quiet;

        /// Serves `GET /metrics` (under [`path_prefix`](Server::path_prefix), with
        /// `HEAD` and `OPTIONS` as for the health endpoints) in Prometheus' text
        /// exposition format 0.0.4. Off by default. It shows health as
        /// `/readyz` and `/livez` would answer at that moment (a scrape runs
        /// on-request checks as a probe does, each within its timeout and one run
        /// at a time):
        ///
        /// - `healthz_ready`, `healthz_alive`, `healthz_draining`: 0/1 gauges;
        /// - `healthz_check{name,type}`: a 0/1 gauge per target, check and
        ///   built-in item, `type` being `readyz` or `livez` (as the Kubernetes
        ///   apiserver's `kubernetes_healthcheck`);
        /// - `healthz_check_duration_seconds{name,type}`: each check's last run;
        /// - `healthz_check_failures_total{name,type}`: each check's failed runs;
        /// - `healthz_connections_accepted_total`, `healthz_connections_evicted_total`,
        ///   `healthz_requests_total{code}`, `healthz_requests_malformed_total`.
        ///
        /// The counters are kept whether or not this is on: a relaxed atomic add
        /// per connection and per answer.
        metrics(on: bool) => routes.metrics = on;

        /// Speaks systemd's notify protocol (sd_notify(3)) when systemd asks for
        /// it through `NOTIFY_SOCKET` (a path, or `@name` in the abstract
        /// namespace). Off by default; on, and with the variable absent, nothing
        /// is opened and nothing runs.
        ///
        /// - `READY=1` once, the first time a readiness report passes (on-request
        ///   checks run for it, as for a probe of `/readyz`), so a `Type=notify`
        ///   unit counts as started when the service is really ready;
        /// - `STATUS=ready` or `STATUS=not ready (failing: NAMES)` whenever that
        ///   report changes, for `systemctl status`. Nothing has to probe for it,
        ///   and the order of calls does not matter (bind before or after
        ///   registering targets and checks, or calling
        ///   [`Health::ready`](crate::Health::ready)): every change wakes the
        ///   notifier, which tells systemd at once what a flag, a target, a
        ///   background check's verdict, a registration or a new check's first
        ///   run changed. Only an on-request check's answer changes with nobody
        ///   calling anything: those checks run again every
        ///   [`notify_recheck`](Server::notify_recheck) (1 s), so systemd hears
        ///   of a change in their answers within that interval;
        /// - `STOPPING=1` when shutdown (or its drain) starts;
        /// - with `WATCHDOG_USEC` set (and `WATCHDOG_PID` unset or naming this
        ///   process), `WATCHDOG=1` four times per interval `W` **only while a
        ///   liveness probe passes** (on-request liveness checks run for it), and
        ///   at once when liveness recovers. When liveness fails at time `t`, the
        ///   pings stop and systemd restarts the service between `t + 3W/4` and
        ///   `t + W`; a liveness that recovers within `3W/4` is never restarted.
        ///   Four pings rather than sd_watchdog_enabled(3)'s two leave room for
        ///   three late ones on a busy host. No `WATCHDOG=trigger` is sent:
        ///   liveness checks already have their thresholds, and the wait mirrors
        ///   the kubelet's `failureThreshold` × `periodSeconds` instead of
        ///   restarting on the first bad reading.
        ///
        /// Messages leave from two threads of their own (readiness, and the
        /// watchdog when systemd asked for one) through a non-blocking socket, so
        /// a receiver that stops reading never holds up the caller of
        /// [`Health::ready`](crate::Health::ready), the watchdog or shutdown. The
        /// first failure (a message that cannot be sent, or a `WATCHDOG_USEC` or
        /// `WATCHDOG_PID` that cannot be read) is reported once
        /// ([`Event::NotifyError`]); nothing is retried. The watchdog's pings are
        /// never more often than every 10 ms, and one goes out at once when
        /// liveness recovers. Linux only: elsewhere this compiles and does nothing.
        notify_systemd(on: bool) => systemd = on;

        /// How often, while on-request checks gate readiness, systemd's
        /// readiness report runs them afresh (see
        /// [`notify_systemd`](Server::notify_systemd)): the bound on how late
        /// `STATUS=` and `READY=1` follow a change in their answers. Default
        /// 1 s; raise it for checks too costly to run that often. Probes run
        /// them as before, whatever this says.
        notify_recheck(interval: Duration) => notify_recheck = interval;

        /// Stack size of each server thread. Default 128 KiB (64 KiB to 256 MiB);
        /// raise it if your event hook needs deep stacks.
        thread_stack_size(bytes: usize) => stack_size = bytes;
    }

    /// Binds `addr` now, in the calling thread, and serves in the background.
    ///
    /// The configuration is checked first (an invalid one is an error of kind
    /// `InvalidInput`, before any socket is opened); then binding errors
    /// ("address in use", "permission denied") are returned here. Port 0
    /// picks a free port: see [`Running::local_addr`].
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an invalid configuration, before any socket is
    /// opened. For an address that cannot be resolved or bound, the operating
    /// system's kind (`AddrInUse`, `PermissionDenied`, ...): the message names
    /// the address (`cannot listen on 0.0.0.0:8080`) and the operating system's
    /// error is its `source()`. The operating system's kind, too, if a server
    /// thread cannot start.
    pub fn bind(self, addr: impl ToSocketAddrs) -> Result<Running, Error> {
        self.config.validate()?;
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| Error::step("cannot resolve the address to listen on", e))?
            .collect();
        let listener = TcpListener::bind(&addrs[..]).map_err(|e| {
            let addrs: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
            Error::step(format!("cannot listen on {}", addrs.join(" or ")), e)
        })?;
        self.serve(listener, None)
    }

    /// Binds a Unix domain socket at `path` now, in the calling thread, and
    /// serves on it in the background: the same endpoints, HTTP, limits and
    /// events as over TCP, for a service that must not open a port. Probe it
    /// with `curl --unix-socket PATH http://localhost/healthz` or
    /// [`Probe::unix`](crate::Probe::unix).
    ///
    /// **The socket file.** If `path` is a socket file that nothing listens
    /// on (a crashed process left it: connecting to it is refused), it is
    /// replaced. Anything else there is left alone and binding fails with
    /// `AddrInUse`: a file that is not a socket, a socket a server accepts
    /// connections on, or one that does not answer within a second. The file
    /// is removed when the server stops, if it is still the one created
    /// here. Two instances started at the same instant on one stale path can
    /// both take it for stale; give each instance its own path.
    ///
    /// On Linux nothing goes through the path after binding: deleting the
    /// file while serving, or moving the process to another directory, only
    /// keeps new clients out. Elsewhere shutdown wakes the threads in
    /// `accept` by connecting to the path (made absolute when bound): with
    /// the file gone they stay, and shutdown reports them.
    ///
    /// **Permissions.** Whoever may connect may probe: the file is created
    /// with the process's umask, and connecting needs write permission on it
    /// and search permission on every directory above. Put it in a directory
    /// only your service's users can enter (systemd's `RuntimeDirectory=`
    /// with `RuntimeDirectoryMode=0750`), or start the process with a narrower
    /// umask (systemd's `UMask=`).
    ///
    /// For a Linux abstract name (no file at all), bind it yourself and
    /// [`listen`](Server::listen):
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # #[cfg(target_os = "linux")] {
    /// use std::os::linux::net::SocketAddrExt;
    /// use std::os::unix::net::{SocketAddr, UnixListener};
    ///
    /// let name = format!("healthz-doc-{}", std::process::id());
    /// let listener = UnixListener::bind_addr(&SocketAddr::from_abstract_name(&name)?)?;
    /// let server = healthz::Server::new(healthz::Health::new()).listen(listener)?;
    /// assert_eq!(server.local_addr().as_abstract_name(), Some(name.as_bytes()));
    /// # }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`bind`](Server::bind), the message naming `path`; `AddrInUse`
    /// when something other than a stale socket file is there.
    #[cfg(unix)]
    pub fn bind_unix(
        self,
        path: impl AsRef<std::path::Path>,
    ) -> Result<Running<UnixSocketAddr>, Error> {
        self.config.validate()?;
        let path = path.as_ref();
        let (listener, file) = bind_unix(path)
            .map_err(|e| Error::step(format!("cannot listen on {}", path.display()), e))?;
        self.serve(listener, Some(file))
    }

    /// Serves on a listener you bound yourself, on background threads: a
    /// `TcpListener`, or a `UnixListener` (whose socket file, if any, stays
    /// yours: it is not removed at shutdown).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an invalid configuration; the operating system's kind
    /// if the listener cannot be set up or a server thread cannot start.
    pub fn listen<L: Listener>(self, listener: L) -> Result<Running<L::Addr>, Error> {
        self.config.validate()?;
        self.serve(listener, None)
    }

    /// Starts serving `socket`, supervised by a thread of its own.
    fn serve<L: Listener>(
        self,
        listener: L,
        file: Option<SocketFile>,
    ) -> Result<Running<L::Addr>, Error> {
        let (socket, addr) = listener.into_socket()?;
        let token = ShutdownToken::new();
        let done = Arc::new(Latch::default());
        let signal = done.clone();
        // The supervisor starts first, so that nothing serves unsupervised;
        // it ends at once if starting fails (and `hand_over` is dropped).
        let (hand_over, handed) = mpsc::sync_channel::<Lifecycle>(1);
        let supervisor = thread::Builder::new()
            .name("healthz-server".into())
            .stack_size(self.config.stack_size)
            .spawn(move || {
                let _done = SetOnDrop(&signal);
                handed.recv().map_or(Ok(()), Lifecycle::supervise)
            })?;
        let lifecycle = self.start(socket.0, token.clone(), file)?;
        let (drain_delay, bound) = (lifecycle.drain_delay, lifecycle.bound());
        let _ = hand_over.send(lifecycle);
        Ok(Running {
            addr,
            token,
            drain_delay,
            bound,
            done,
            supervisor: Mutex::new(Some(supervisor)),
        })
    }

    /// Serves until `token` is triggered, then shuts down gracefully and
    /// returns: Dapr's `Run(ctx, port)`. The calling thread supervises (it
    /// waits for the token, then runs the shutdown); connections are served
    /// on threads of their own.
    ///
    /// Bind the listener first (`TcpListener::bind`, or `UnixListener::bind`),
    /// so that a bind error is yours to report before anything runs. Returns
    /// an error if the configuration is invalid (kind `InvalidInput`, as from
    /// [`bind`](Server::bind)) or the shutdown deadline passed.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an invalid configuration, before serving; the
    /// operating system's kind if the listener cannot be set up; after the
    /// shutdown, an error for which [`Error::is_deadline`] holds (kind
    /// `TimedOut`) when the deadline passed with requests still in flight.
    pub fn run<L: Listener>(self, listener: L, token: &ShutdownToken) -> Result<(), Error> {
        self.config.validate()?;
        let (socket, _) = listener.into_socket()?;
        self.start(socket.0, token.clone(), None)?.supervise()
    }

    /// Starts accepting on `listener` (its configuration checked already).
    fn start(
        self,
        listener: ListenSocket,
        token: ShutdownToken,
        file: Option<SocketFile>,
    ) -> Result<Lifecycle, Error> {
        let (addr, config) = (listener.local_addr()?, self.config);
        let events = Events::new(self.hook);
        let watch = events.hook().map(|hook| self.health.watch(hook.clone()));
        let service = Arc::new(Service {
            settings: config.conn,
            routes: config.routes,
            health: self.health,
            events,
            registry: Registry::new(config.max_connections),
            counters: Counters::default(),
        });
        let stack_size = config.stack_size;
        let acceptors = Acceptors::start(service.clone(), listener, config.spares, stack_size)?;
        if let Some(path) = file.as_ref().and_then(SocketFile::replaced_stale) {
            let path = path.to_path_buf();
            service.events.emit(Event::StaleSocketReplaced { path });
        }
        service.events.emit(Event::Listening { addr });
        // Told only once connections are taken: systemd starts what depends on us then.
        let systemd = config
            .systemd
            .then(|| {
                let recheck = config.notify_recheck;
                Systemd::start(&service.health, &service.events, recheck, stack_size)
            })
            .flatten();
        Ok(Lifecycle {
            token,
            drain_delay: config.drain_delay,
            shutdown_timeout: config.shutdown_timeout,
            service,
            acceptors,
            systemd,
            file,
            _watch: watch,
        })
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("health", &self.health)
            .field("config", &self.config)
            .field("on_event", &self.hook.is_some())
            .finish()
    }
}

/// A server that is bound and serving on background threads: on TCP (`A`
/// is `std::net::SocketAddr`), or on a Unix socket (`A` is
/// `std::os::unix::net::SocketAddr`).
///
/// [`shutdown`](Running::shutdown) stops it (after the drain delay, if one
/// is set), and so does triggering its
/// [`shutdown_token`](Running::shutdown_token). Dropping it stops it too,
/// ignoring the result and **without the drain**: a drop is what an error
/// returned with `?` after bind, or a panic, does, and the drain is for a
/// planned stop. Requests in flight still finish within the shutdown
/// timeout, and every thread is joined before the drop returns.
///
/// The compiler says so when it is dropped at once (a common slip, which
/// leaves a service with no health server):
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// # fn main() -> Result<(), healthz::Error> {
/// healthz::Server::new(healthz::Health::new()).bind("127.0.0.1:0")?; // stopped at once
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping `Running` stops the server at once: keep it for as long as the server should serve"]
pub struct Running<A = SocketAddr> {
    addr: A,
    token: ShutdownToken,
    /// The drain before shutdown, unless the stop request names another.
    drain_delay: Duration,
    /// How long the supervisor may take once the token is triggered, without the drain.
    bound: Duration,
    /// Set when the supervisor has finished.
    done: Arc<Latch>,
    supervisor: Mutex<Option<JoinHandle<Result<(), Error>>>>,
}

impl<A: Clone> Running<A> {
    /// The bound address, with the real port when port 0 was asked for, or
    /// the Unix socket's.
    pub fn local_addr(&self) -> A {
        self.addr.clone()
    }
}

impl<A> Running<A> {
    /// A token that stops this server when triggered, from any thread.
    pub fn shutdown_token(&self) -> ShutdownToken {
        self.token.clone()
    }

    /// Stops the server and waits for it: stops accepting at once, closes idle
    /// connections, lets in-flight requests finish, and joins every thread.
    ///
    /// Returns within the shutdown timeout (plus a moment to close what is
    /// left). If requests were still in flight at the deadline, their
    /// connections are closed and the error says how many. Idempotent: later
    /// calls, from any thread, wait for the first and return `Ok`. When it
    /// returns, the port is free to bind again.
    ///
    /// # Errors
    ///
    /// When the shutdown deadline passed with requests still in flight:
    /// [`Error::is_deadline`] holds, the kind is `TimedOut`, and
    /// [`Error::connections_cut`] and [`Error::threads_left`] say the rest.
    pub fn shutdown(&self) -> Result<(), Error> {
        self.token.trigger();
        self.wait()
    }

    /// Drains, then shuts down: readiness fails at once while liveness keeps
    /// passing and the server keeps serving for `delay`, then the graceful
    /// shutdown of [`shutdown`](Running::shutdown) follows. This is the
    /// termination Kubernetes users need: endpoints drop the pod before it
    /// stops answering. Overrides [`Server::drain_delay`].
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a delay over a year (nothing stops); otherwise as for
    /// [`shutdown`](Running::shutdown).
    pub fn drain(&self, delay: Duration) -> Result<(), Error> {
        at_most_a_year("drain_delay", delay)?;
        self.token.trigger_draining(delay);
        self.wait()
    }

    /// Blocks until the server has stopped (after its token is triggered, by
    /// [`shutdown`](Running::shutdown) or any clone of
    /// [`shutdown_token`](Running::shutdown_token)), and returns what shutdown
    /// returned.
    ///
    /// # Errors
    ///
    /// As for [`shutdown`](Running::shutdown); `Other` if the server's own
    /// thread panicked.
    pub fn wait(&self) -> Result<(), Error> {
        let mut supervisor = lock(&self.supervisor);
        let Some(handle) = supervisor.take() else {
            return Ok(());
        };
        self.token.wait();
        // The supervisor bounds its own work by the drain and the deadline;
        // the margin is only for safety, so that this never hangs.
        let drain = self.token.drain().unwrap_or(self.drain_delay);
        if !self.done.wait_timeout(drain + self.bound + WAIT_MARGIN) {
            return Err(Error::deadline(self.bound, 0, 1));
        }
        handle.join().unwrap_or_else(|_| {
            Err(io::Error::new(io::ErrorKind::Other, "healthz server thread panicked").into())
        })
    }
}

impl<A> Drop for Running<A> {
    /// A drop is no planned stop (an error returned with `?` after bind, a
    /// panic unwinding): the server stops at once, without the drain delay,
    /// unless a stop was already asked for, which goes on as asked.
    fn drop(&mut self) {
        if !self.token.is_triggered() {
            self.token.trigger_draining(Duration::ZERO);
        }
        let _ = self.wait();
    }
}

impl<A: fmt::Debug> fmt::Debug for Running<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .field("stopping", &self.token.is_triggered())
            .finish()
    }
}

/// A server that is accepting, and what its supervisor needs to stop it.
struct Lifecycle {
    token: ShutdownToken,
    /// The drain before shutdown, unless the stop request names another.
    drain_delay: Duration,
    shutdown_timeout: Duration,
    service: Arc<Service>,
    acceptors: Arc<Acceptors>,
    systemd: Option<Systemd>,
    /// The socket file this server created, removed as it stops.
    file: Option<SocketFile>,
    /// The server's hook hears health events until the server stops.
    _watch: Option<Watch>,
}

impl Lifecycle {
    /// How long [`supervise`](Lifecycle::supervise) takes at most once the
    /// token is triggered, not counting the drain.
    fn bound(&self) -> Duration {
        budget::bound(self.shutdown_timeout, self.systemd.is_some())
    }

    /// The supervisor's part: wait for the token, drain if asked to, then
    /// shut down.
    fn supervise(self) -> Result<(), Error> {
        self.token.wait();
        if let Some(systemd) = &self.systemd {
            systemd.stopping();
        }
        let delay = self.token.drain().unwrap_or(self.drain_delay);
        if !delay.is_zero() {
            // Readiness fails at once; serving goes on until the delay is over.
            self.service.health.drain();
            self.service.events.emit(Event::Draining { delay });
            thread::sleep(delay);
        }
        self.shut_down()
    }

    /// Go's `Server.Shutdown`, step by step, within one deadline.
    fn shut_down(self) -> Result<(), Error> {
        let (service, acceptors) = (&self.service, &self.acceptors);
        let timeout = self.shutdown_timeout;
        let registry = &service.registry;
        let start = Instant::now();
        // The timeout is for requests in flight; the server's own threads
        // (woken in `accept`, or closed while idle) always get the grace to
        // leave, so a zero timeout means "do not wait for requests", nothing more.
        let deadline = start + timeout;
        let own = deadline.max(start + FORCE_GRACE);

        // 1. Stop accepting: the stop signal (no connection registers from
        //    now on), then the threads in `accept` are woken to leave, and
        //    the listening socket closes as the last one does.
        registry.stop();
        acceptors.stop();
        // 2. Close idle connections (while those threads leave).
        registry.close_idle();
        let unwoken = acceptors.wait_stopped(own);
        // The socket file goes with the listening socket.
        if let Some(file) = self.file {
            file.remove();
        }
        service.events.emit(Event::ShuttingDown);
        // 3. Wait for requests in flight.
        let mut left = registry.wait_empty(deadline);
        // 4. At the deadline, close the rest by force, and let every
        //    closed connection's thread leave.
        if left > 0 {
            registry.close_all();
            left = registry.wait_empty(Instant::now().max(deadline) + FORCE_GRACE);
        }
        let cut = registry.cut();
        // 5. Join every thread; one still holding a connection is stuck in
        //    user code (an event hook) and is left.
        let stuck = left + unwoken;
        acceptors.join(stuck == 0);
        if let Some(systemd) = self.systemd {
            systemd.stop();
        }

        let connections = service.counters.connections();
        service.events.emit(Event::Stopped { connections, cut });
        if cut > 0 || stuck > 0 {
            Err(Error::deadline(timeout, cut, stuck))
        } else {
            Ok(())
        }
    }
}
