//! A synchronous service with two components that report their own health:
//! a queue consumer and a cache warmer. Each registers a readiness target and
//! flips it as it works; each thread holds a thread guard (a panic fails
//! liveness); the consumer's loop beats a heartbeat (a stall fails liveness);
//! a background check watches the cache's freshness. At the end the service
//! drains (readiness fails, liveness holds, it keeps serving) and stops.
//!
//! ```text
//! cargo run --example worker -- --addr 127.0.0.1:8080 --for 10s
//! curl -s 127.0.0.1:8080/readyz?verbose      # from another terminal
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use healthz::{Check, Health, Server};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = "127.0.0.1:8080".to_string();
    let mut run_for = Duration::from_secs(10);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next().ok_or("--addr needs HOST:PORT")?,
            "--for" => {
                let secs = args.next().ok_or("--for needs seconds")?;
                run_for = Duration::from_secs(secs.trim_end_matches('s').parse()?);
            }
            _ => {
                return Err(
                    format!("unknown argument `{arg}` (try --addr HOST:PORT --for 10s)").into(),
                )
            }
        }
    }

    let health = Health::new();
    let server = Server::new(health.clone())
        .drain_delay(Duration::from_secs(2))
        .on_event(|event| eprintln!("healthz: {event}"))
        .bind(&addr)?;
    println!("listening on {}", server.local_addr());

    let stop = Arc::new(AtomicBool::new(false));
    let consumer = start_consumer(&health, stop.clone())?;
    let warmer = start_cache_warmer(&health, stop.clone())?;
    health.ready(); // the process itself is up; the components decide the rest

    let started = Instant::now();
    while started.elapsed() < run_for {
        thread::sleep(Duration::from_millis(250));
    }

    eprintln!("worker: time is up; draining");
    server.shutdown()?; // drains for 2 s first: readiness fails, liveness holds
    stop.store(true, Ordering::SeqCst);
    consumer.join().map_err(|_| "consumer panicked")?;
    warmer.join().map_err(|_| "warmer panicked")?;
    Ok(())
}

/// Consumes jobs from a queue it must first connect to. Ready while connected;
/// its loop making progress, and its thread being alive, is what liveness
/// means for this service.
fn start_consumer(
    health: &Health,
    stop: Arc<AtomicBool>,
) -> std::io::Result<thread::JoinHandle<()>> {
    let ready = health.target("queue")?;
    // Liveness: the loop beats at least every 2 s (a stall means restart)...
    let heartbeat = health.heartbeat("consumer-loop", Duration::from_secs(2))?;
    // ... and its thread has not died (a panic means restart).
    let guard = health.thread_guard("consumer")?;

    let (jobs, queue) = mpsc::channel::<u32>();
    thread::Builder::new()
        .name("producer".into())
        .spawn(move || {
            for job in 0..10_000 {
                if jobs.send(job).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(100));
            }
        })?;
    thread::Builder::new()
        .name("consumer".into())
        .spawn(move || {
            thread::sleep(Duration::from_millis(500)); // "connecting to the broker"
            ready.ready();
            let mut handled = 0u64;
            while !stop.load(Ordering::SeqCst) {
                heartbeat.beat();
                match queue.recv_timeout(Duration::from_millis(200)) {
                    Ok(_job) => handled += 1,
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        ready.not_ready(); // the broker went away: stop taking traffic
                        break;
                    }
                }
                // Every 30 jobs, a short "broker reconnect" during which it is not ready.
                if handled % 30 == 29 {
                    ready.not_ready();
                    thread::sleep(Duration::from_millis(300));
                    ready.ready();
                    handled += 1;
                }
            }
            eprintln!("worker: consumer handled {handled} jobs");
            // Ending on purpose: no longer part of liveness.
            heartbeat.retire();
            guard.finish();
        })
}

/// Warms a cache at start (not ready until warm), then refreshes it; a
/// background check fails readiness if the cache goes stale.
fn start_cache_warmer(
    health: &Health,
    stop: Arc<AtomicBool>,
) -> std::io::Result<thread::JoinHandle<()>> {
    let ready = health.target("cache")?;
    let guard = health.thread_guard("cache-warmer")?;
    let refreshed = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    let seen = refreshed.clone();
    health.add_check(
        Check::new("cache-fresh", move || {
            let age = epoch
                .elapsed()
                .as_secs()
                .saturating_sub(seen.load(Ordering::SeqCst));
            if age <= 5 {
                Ok(())
            } else {
                Err(format!("cache is {age} s old").into())
            }
        })
        .every(Duration::from_secs(1))
        .failure_threshold(2),
    )?;
    thread::Builder::new()
        .name("cache-warmer".into())
        .spawn(move || {
            thread::sleep(Duration::from_secs(1)); // "warming"
            refreshed.store(epoch.elapsed().as_secs(), Ordering::SeqCst);
            ready.ready();
            while !stop.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(500));
                refreshed.store(epoch.elapsed().as_secs(), Ordering::SeqCst);
            }
            guard.finish();
        })
}
