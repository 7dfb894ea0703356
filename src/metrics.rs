//! Health as Prometheus metrics: the server's counters, and `/metrics` in
//! the text exposition format (version 0.0.4). Counting costs one relaxed
//! atomic add per answer; rendering takes one snapshot of the health state,
//! which runs on-request checks as a probe does.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::health::{Health, Kind};

/// The content type of the text exposition format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every status the server answers with, in the order they are shown.
const STATUSES: [u16; 13] = [
    200, 204, 400, 404, 405, 408, 413, 414, 431, 500, 501, 503, 0,
];

/// What one server counts over its life.
#[derive(Default)]
pub(crate) struct Counters {
    accepted: AtomicU64,
    evicted: AtomicU64,
    malformed: AtomicU64,
    /// Answers by status, indexed as [`STATUSES`] (the last slot: any other).
    answered: [AtomicU64; STATUSES.len()],
}

impl Counters {
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn evicted(&self) {
        self.evicted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn malformed(&self) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn answered(&self, status: u16) {
        let at = STATUSES.iter().position(|s| *s == status);
        let at = at.unwrap_or(STATUSES.len() - 1);
        self.answered[at].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// `/metrics`: health and the server's counters, each family with `# HELP`
/// and `# TYPE`, names as Prometheus' conventions have them.
pub(crate) fn render(health: &Health, counters: &Counters) -> Vec<u8> {
    let mut out = String::new();
    let flag = |b: bool| u8::from(b);
    family(
        &mut out,
        "healthz_ready",
        "gauge",
        "Whether the service is ready (1) or not (0), as /readyz would answer now.",
    );
    let snapshot = health.snapshot();
    let _ = writeln!(out, "healthz_ready {}", flag(snapshot.ready));
    family(
        &mut out,
        "healthz_alive",
        "gauge",
        "Whether the service is alive (1) or not (0), as /livez would answer now.",
    );
    let _ = writeln!(out, "healthz_alive {}", flag(snapshot.alive));
    family(
        &mut out,
        "healthz_draining",
        "gauge",
        "Whether the server is draining before shutdown (1) or not (0).",
    );
    let _ = writeln!(out, "healthz_draining {}", flag(snapshot.draining));

    let gauges = snapshot.gauges;
    family(
        &mut out,
        "healthz_check",
        "gauge",
        "Whether each target and check passes (1) or fails (0); type is readyz or livez.",
    );
    for gauge in &gauges {
        let labels = labels(&gauge.name, gauge.kind);
        let _ = writeln!(out, "healthz_check{{{labels}}} {}", flag(gauge.passing));
    }
    family(
        &mut out,
        "healthz_check_duration_seconds",
        "gauge",
        "How long each check's last finished run took.",
    );
    for gauge in &gauges {
        if let Some((Some(took), _)) = gauge.check {
            let labels = labels(&gauge.name, gauge.kind);
            let _ = writeln!(
                out,
                "healthz_check_duration_seconds{{{labels}}} {:.6}",
                took.as_secs_f64()
            );
        }
    }
    family(
        &mut out,
        "healthz_check_failures_total",
        "counter",
        "Runs of each check that failed, timed out or panicked.",
    );
    for gauge in &gauges {
        if let Some((_, failures)) = gauge.check {
            let labels = labels(&gauge.name, gauge.kind);
            let _ = writeln!(out, "healthz_check_failures_total{{{labels}}} {failures}");
        }
    }

    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    family(
        &mut out,
        "healthz_connections_accepted_total",
        "counter",
        "Client connections accepted.",
    );
    let _ = writeln!(
        out,
        "healthz_connections_accepted_total {}",
        load(&counters.accepted)
    );
    family(
        &mut out,
        "healthz_connections_evicted_total",
        "counter",
        "Connections closed to make room at the connection cap.",
    );
    let _ = writeln!(
        out,
        "healthz_connections_evicted_total {}",
        load(&counters.evicted)
    );
    family(
        &mut out,
        "healthz_requests_total",
        "counter",
        "Requests answered, by status code.",
    );
    for (status, counter) in STATUSES.iter().zip(&counters.answered) {
        let count = load(counter);
        if count > 0 {
            let code = if *status == 0 {
                "other".to_string()
            } else {
                status.to_string()
            };
            let _ = writeln!(out, "healthz_requests_total{{code=\"{code}\"}} {count}");
        }
    }
    family(
        &mut out,
        "healthz_requests_malformed_total",
        "counter",
        "Requests refused as malformed or oversized (400, 414, 431, 501).",
    );
    let _ = writeln!(
        out,
        "healthz_requests_malformed_total {}",
        load(&counters.malformed)
    );
    out.into_bytes()
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `name="...",type="readyz"`, the label value escaped as the format requires.
fn labels(name: &str, kind: Kind) -> String {
    let kind = match kind {
        Kind::Readiness => "readyz",
        Kind::Liveness => "livez",
    };
    format!("name=\"{}\",type=\"{kind}\"", escape(name))
}

/// A label value: backslash, double quote and line feed escaped (exposition
/// format 0.0.4).
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape("db-1.main_x"), "db-1.main_x");
    }

    #[test]
    fn answers_are_counted_by_status_and_others_apart() {
        let counters = Counters::default();
        counters.answered(200);
        counters.answered(200);
        counters.answered(503);
        counters.answered(418);
        let text = String::from_utf8(render(&Health::new(), &counters)).unwrap();
        assert!(
            text.contains("healthz_requests_total{code=\"200\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("healthz_requests_total{code=\"503\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("healthz_requests_total{code=\"other\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("code=\"404\""), "{text}");
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let text = String::from_utf8(render(&Health::new(), &Counters::default())).unwrap();
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(declared.last().map(String::as_str), Some(name), "{line}");
            }
        }
        assert_eq!(declared.len(), 10);
    }
}
