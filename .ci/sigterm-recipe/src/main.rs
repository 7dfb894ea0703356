use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use healthz::{Health, Server};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// How long the service's own workers may take to stop, once the server has.
const WORKERS_STOP: Duration = Duration::from_secs(2);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Before any thread starts: from here on, SIGTERM no longer kills the process.
    let mut signals = Signals::new([SIGTERM, SIGINT])?;

    let mut args = std::env::args().skip(1);
    let socket = args.next().unwrap_or("/run/my-service/health.sock".into());
    // How long one job of the demo worker takes: a stand-in for real work.
    let job = Duration::from_millis(args.next().and_then(|ms| ms.parse().ok()).unwrap_or(100));
    let health = Health::new();
    let server = Server::new(health.clone())
        .notify_systemd(true)
        // Readiness fails this long, while serving goes on, before shutdown.
        .drain_delay(Duration::from_secs(5))
        .on_event(|event| eprintln!("healthz: {event}"))
        .bind_unix(&socket)?;

    // The first SIGTERM or SIGINT drains and stops; a second one ends the
    // process at once, as people expect of Ctrl-C pressed twice.
    let stop = server.shutdown_token();
    std::thread::spawn(move || {
        let mut received = signals.forever();
        if let Some(signal) = received.next() {
            eprintln!("received signal {signal}; draining (again to exit at once)");
            stop.trigger();
        }
        if let Some(signal) = received.next() {
            eprintln!("received signal {signal} again; exiting at once");
            std::process::exit(128 + signal);
        }
    });

    // The service's own work: a worker that stops between jobs when asked.
    let stopping = Arc::new(AtomicBool::new(false));
    let (stopped, worker_stopped) = mpsc::channel::<()>();
    let asked = stopping.clone();
    std::thread::spawn(move || {
        while !asked.load(Ordering::SeqCst) {
            std::thread::sleep(job); // ... one job ...
        }
        let _ = stopped.send(());
    });
    health.ready();

    // Returns once a signal has drained and shut the server down: STOPPING=1,
    // connections closed, threads joined, the socket file removed.
    server.wait()?;
    // Then the service's own work, within a bound: a worker still busy after
    // it is left behind, and the process exits 1 (the worker ends with it).
    stopping.store(true, Ordering::SeqCst);
    worker_stopped
        .recv_timeout(WORKERS_STOP)
        .map_err(|_| format!("a worker did not stop within {WORKERS_STOP:?}"))?;
    Ok(())
}
