//! Health reports as bytes: Kubernetes' verbose text and the IETF
//! `application/health+json` draft. Pure functions; JSON escaped by hand.

use std::fmt::Write;

use crate::date;
use crate::health::{Report, Status};

/// `[+]name ok` / `[-]name failed: reason withheld` lines, then the verdict,
/// as Kubernetes' `?verbose` does.
pub(crate) fn verbose(report: &Report, endpoint: &str, show_reasons: bool) -> Vec<u8> {
    let mut out = String::new();
    for item in &report.items {
        if item.excluded {
            let _ = writeln!(out, "[+]{} excluded: ok", item.name);
        } else if item.status != Status::Fail {
            let _ = writeln!(out, "[+]{} ok", item.name);
        } else {
            let reason = match (&item.reason, show_reasons || item.shown) {
                (Some(reason), true) => reason.as_str(),
                _ => "reason withheld",
            };
            let _ = writeln!(out, "[-]{} failed: {reason}", item.name);
        }
    }
    if !report.unmatched.is_empty() {
        let names: Vec<String> = report
            .unmatched
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect();
        let _ = writeln!(
            out,
            "warn: some health checks cannot be excluded: no matches for {}",
            names.join(",")
        );
    }
    let verdict = if report.passed() { "passed" } else { "failed" };
    let _ = writeln!(out, "{endpoint} check {verdict}");
    out.into_bytes()
}

/// The IETF health-check draft: `status`, and `checks` keyed by name, each an
/// array of one `{status, output, time}` object.
pub(crate) fn json(report: &Report, show_reasons: bool) -> Vec<u8> {
    let counted = report.items.iter().filter(|i| !i.excluded);
    let status = if !report.passed() {
        "fail"
    } else if counted.clone().any(|i| i.status == Status::Warn) {
        "warn"
    } else {
        "pass"
    };
    let mut out = format!("{{\"status\":\"{status}\",\"checks\":{{");
    for (n, item) in counted.enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push('"');
        escape_into(&mut out, &item.name);
        out.push_str("\":[{\"status\":\"");
        out.push_str(match item.status {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        });
        out.push('"');
        if let (Some(reason), true) = (&item.reason, show_reasons || item.shown) {
            out.push_str(",\"output\":\"");
            escape_into(&mut out, reason);
            out.push('"');
        }
        let _ = write!(out, ",\"time\":\"{}\"}}]", date::rfc3339(item.at));
    }
    out.push('}');
    if !report.unmatched.is_empty() {
        out.push_str(",\"notes\":[");
        for (n, name) in report.unmatched.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push_str("\"no check to exclude named ");
            escape_into(&mut out, name);
            out.push('"');
        }
        out.push(']');
    }
    out.push('}');
    out.into_bytes()
}

/// daprd's error body: `{"errorCode":"ERR_HEALTH_NOT_READY","message":"dapr is not ready: [a b]"}`.
pub(crate) fn dapr_error(failing: &[&str]) -> Vec<u8> {
    let mut out = String::from("{\"errorCode\":\"ERR_HEALTH_NOT_READY\",\"message\":\"");
    escape_into(
        &mut out,
        &format!("dapr is not ready: [{}]", failing.join(" ")),
    );
    out.push_str("\"}");
    out.into_bytes()
}

/// Appends `text` as the inside of a JSON string (RFC 8259, section 7).
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Item;

    fn item(name: &str, status: Status, reason: Option<&str>) -> Item {
        Item {
            name: name.into(),
            status,
            reason: reason.map(Into::into),
            shown: false,
            excluded: false,
            at: 1_764_108_000,
            runs: None,
        }
    }

    #[test]
    fn json_strings_escape_quotes_backslashes_and_controls() {
        let mut out = String::new();
        escape_into(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, "a\\\"b\\\\c\\nd\\u0001é");
    }

    #[test]
    fn json_report_with_reasons_shown() {
        let report = Report {
            items: vec![
                item("ready", Status::Pass, None),
                item("db", Status::Fail, Some("said \"no\"")),
            ],
            unmatched: vec![],
        };
        assert_eq!(
            String::from_utf8(json(&report, true)).unwrap(),
            "{\"status\":\"fail\",\"checks\":{\"ready\":[{\"status\":\"pass\",\"time\":\"2025-11-25T22:00:00Z\"}],\
             \"db\":[{\"status\":\"fail\",\"output\":\"said \\\"no\\\"\",\"time\":\"2025-11-25T22:00:00Z\"}]}}"
        );
    }

    #[test]
    fn verbose_report_withholds_reasons_unless_shown() {
        let report = Report {
            items: vec![
                item("ready", Status::Pass, None),
                item("db", Status::Fail, Some("down")),
            ],
            unmatched: vec!["nope".into()],
        };
        let text = String::from_utf8(verbose(&report, "readyz", false)).unwrap();
        assert_eq!(
            text,
            "[+]ready ok\n[-]db failed: reason withheld\n\
             warn: some health checks cannot be excluded: no matches for \"nope\"\nreadyz check failed\n"
        );
        assert!(String::from_utf8(verbose(&report, "readyz", true))
            .unwrap()
            .contains("[-]db failed: down\n"));
    }

    #[test]
    fn dapr_error_names_what_is_not_ready() {
        assert_eq!(
            String::from_utf8(dapr_error(&["queue", "cache"])).unwrap(),
            "{\"errorCode\":\"ERR_HEALTH_NOT_READY\",\"message\":\"dapr is not ready: [queue cache]\"}"
        );
    }
}
