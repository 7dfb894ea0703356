//! `/metrics`: health and the server's counters in Prometheus' text
//! exposition format (version 0.0.4), from one snapshot of each (the health
//! snapshot runs on-request checks as a probe does).

use std::fmt::Write;

use crate::counters::{Counters, Counts};
use crate::health::{Health, Item, Kind, Snapshot};

/// The content type of the text exposition format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family: `# HELP` and `# TYPE`, then its samples, each a set
/// of labels (empty for none) and a value.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(String, String)>,
}

/// `/metrics`: health and the server's counters, each family with `# HELP`
/// and `# TYPE`, names as Prometheus' conventions have them. Reads one
/// snapshot of health and one of the counters.
pub(crate) fn render(health: &Health, counters: &Counters) -> Vec<u8> {
    let mut families = health_families(&health.snapshot());
    families.extend(counter_families(&counters.counts()));
    let mut out = String::new();
    for Family {
        name,
        kind,
        help,
        samples,
    } in &families
    {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = match labels.is_empty() {
                true => writeln!(out, "{name} {value}"),
                false => writeln!(out, "{name}{{{labels}}} {value}"),
            };
        }
    }
    out.into_bytes()
}

/// A family with one sample and no labels.
fn one(value: impl ToString) -> Vec<(String, String)> {
    vec![(String::new(), value.to_string())]
}

/// The health families: both verdicts, draining, and each item's gauges.
fn health_families(health: &Snapshot) -> Vec<Family> {
    let flag = |on: bool| u8::from(on);
    let per_item = |value: &dyn Fn(&Item) -> Option<String>| -> Vec<(String, String)> {
        let labelled = |(kind, i): &(Kind, Item)| value(i).map(|v| (labels(&i.name, *kind), v));
        health.items.iter().filter_map(labelled).collect()
    };
    let verdicts = Kind::ALL.into_iter().map(|kind| Family {
        name: kind.family().gauge,
        kind: "gauge",
        help: kind.family().gauge_help,
        samples: one(flag(health.verdicts[kind])),
    });
    verdicts.chain([
        Family {
            name: "healthz_draining",
            kind: "gauge",
            help: "Whether the server is draining before shutdown (1) or not (0).",
            samples: one(flag(health.draining)),
        },
        Family {
            name: "healthz_check",
            kind: "gauge",
            help: "Whether each target and check passes (1) or fails (0); type is readyz or livez.",
            samples: per_item(&|i| Some(flag(!i.fails()).to_string())),
        },
        Family {
            name: "healthz_check_duration_seconds",
            kind: "gauge",
            help: "How long each check's last finished run took.",
            samples: per_item(&|i| match i.runs {
                Some((Some(took), _)) => Some(format!("{:.6}", took.as_secs_f64())),
                _ => None,
            }),
        },
        Family {
            name: "healthz_check_failures_total",
            kind: "counter",
            help: "Runs of each check that failed, timed out or panicked.",
            samples: per_item(&|i| i.runs.map(|(_, failures)| failures.to_string())),
        },
    ])
    .collect()
}

/// The server's counters.
fn counter_families(counts: &Counts) -> Vec<Family> {
    let by_code = counts
        .answered
        .iter()
        .filter(|(_, count)| *count > 0)
        .map(|(status, count)| {
            let code = match status {
                0 => "other".to_string(),
                status => status.to_string(),
            };
            (format!("code=\"{code}\""), count.to_string())
        })
        .collect();
    vec![
        Family {
            name: "healthz_connections_accepted_total",
            kind: "counter",
            help: "Client connections accepted.",
            samples: one(counts.accepted),
        },
        Family {
            name: "healthz_connections_evicted_total",
            kind: "counter",
            help: "Connections closed to make room at the connection cap.",
            samples: one(counts.evicted),
        },
        Family {
            name: "healthz_requests_total",
            kind: "counter",
            help: "Requests answered, by status code.",
            samples: by_code,
        },
        Family {
            name: "healthz_requests_malformed_total",
            kind: "counter",
            help: "Requests refused as malformed or oversized (400, 414, 431, 501).",
            samples: one(counts.malformed),
        },
    ]
}

/// `name="...",type="readyz"`, the label value escaped as the format requires.
fn labels(name: &str, kind: Kind) -> String {
    format!("name=\"{}\",type=\"{}\"", escape(name), kind.name())
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
