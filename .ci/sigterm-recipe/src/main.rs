use std::time::Duration;

use healthz::{Health, Server};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Before any thread starts: from here on, SIGTERM no longer kills the process.
    let mut signals = Signals::new([SIGTERM, SIGINT])?;

    let socket = std::env::args_os()
        .nth(1)
        .unwrap_or_else(|| "/run/my-service/health.sock".into());
    let health = Health::new();
    let server = Server::new(health.clone())
        .notify_systemd(true)
        // Readiness fails this long, while serving goes on, before shutdown.
        .drain_delay(Duration::from_secs(5))
        .on_event(|event| eprintln!("healthz: {event}"))
        .bind_unix(&socket)?;

    let stop = server.shutdown_token();
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            eprintln!("received signal {signal}; draining");
            stop.trigger();
        }
    });

    // ... start the service's own work, then:
    health.ready();

    // Returns once a signal has drained and shut the server down: STOPPING=1,
    // connections closed, threads joined, the socket file removed.
    server.wait()?;
    Ok(())
}
