//! Calendar dates from seconds since the Unix epoch, for the `Date` header
//! (IMF-fixdate) and JSON reports (RFC 3339). Pure; no clock but [`Cache`]'s.
//!
//! Both formats have four-digit years, so every instant past the last second
//! of 9999 is written as that second, in both: one consistent answer for a
//! clock gone mad, never a five-digit year or a year at odds with its day.

use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) const DATE_LEN: usize = 29;

/// 9999-12-31T23:59:59Z, the last instant a four-digit year can name.
pub(crate) const LAST: u64 = 253_402_300_799;

/// Formats seconds since the Unix epoch as an IMF-fixdate (RFC 9110, section 5.6.7).
pub(crate) fn imf_fixdate(unix_secs: u64) -> [u8; DATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let unix_secs = unix_secs.min(LAST);
    let days = unix_secs / 86_400;
    let secs_of_day = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);

    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    two_digits(&mut out[5..7], day);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    two_digits(&mut out[12..14], year / 100);
    two_digits(&mut out[14..16], year % 100);
    two_digits(&mut out[17..19], secs_of_day / 3600);
    two_digits(&mut out[20..22], secs_of_day / 60 % 60);
    two_digits(&mut out[23..25], secs_of_day % 60);
    out
}

/// Formats seconds since the Unix epoch as RFC 3339 UTC: `2026-11-25T22:10:00Z`.
pub(crate) fn rfc3339(unix_secs: u64) -> String {
    let unix_secs = unix_secs.min(LAST);
    let (year, month, day) = civil_from_days(unix_secs / 86_400);
    let secs = unix_secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Seconds since the Unix epoch now (0 for a clock before 1970).
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The `Date` header's text, formatted at most once per second.
#[derive(Default)]
pub(crate) struct Cache {
    secs: u64,
    text: [u8; DATE_LEN],
}

impl Cache {
    pub fn now(&mut self) -> &[u8] {
        let secs = now();
        if secs != self.secs || self.text[0] == 0 {
            self.secs = secs;
            self.text = imf_fixdate(secs);
        }
        &self.text
    }
}

fn two_digits(out: &mut [u8], n: u64) {
    out[0] = b'0' + (n / 10 % 10) as u8;
    out[1] = b'0' + (n % 10) as u8;
}

/// Gregorian (year, month 1..=12, day 1..=31) for a count of days since 1970-01-01.
///
/// Counts in 400-year eras that start on 1 March, so the leap day is the last
/// day of its year and every month length except February's is fixed.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    const DAYS_PER_ERA: u64 = 146_097;
    // 1970-01-01 is day 719_468 after 0000-03-01.
    let z = days + 719_468;
    let era = z / DAYS_PER_ERA;
    let day_of_era = z % DAYS_PER_ERA;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524
        - day_of_era / (DAYS_PER_ERA - 1))
        / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixdate(secs: u64) -> String {
        String::from_utf8(imf_fixdate(secs).to_vec()).unwrap()
    }

    #[test]
    fn imf_fixdate_of_known_instants() {
        let cases: [(u64, &str); 8] = [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (951_868_799, "Tue, 29 Feb 2000 23:59:59 GMT"),
            (951_868_800, "Wed, 01 Mar 2000 00:00:00 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
            (1_709_164_800, "Thu, 29 Feb 2024 00:00:00 GMT"),
            (1_735_689_599, "Tue, 31 Dec 2024 23:59:59 GMT"),
        ];
        for (secs, want) in cases {
            assert_eq!(fixdate(secs), want, "{secs}");
        }
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_868_799), "2000-02-29T23:59:59Z");
    }

    #[test]
    fn the_last_second_of_9999_is_written_as_it_is() {
        assert_eq!(fixdate(LAST), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(rfc3339(LAST), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn instants_past_9999_clamp_to_its_last_second_in_both_formats() {
        // The day after, a century after, and the largest instant there is.
        for secs in [LAST + 1, LAST + 86_400 * 36_525, u64::MAX] {
            assert_eq!(fixdate(secs), fixdate(LAST), "{secs}");
            assert_eq!(rfc3339(secs), rfc3339(LAST), "{secs}");
        }
    }

    #[test]
    fn civil_from_days_walks_every_day_for_four_centuries() {
        // Independent day-by-day calendar: month lengths with the Gregorian leap rule.
        let (mut year, mut month, mut day) = (1970u64, 1u64, 1u64);
        for days in 0..146_097 + 365 * 30 {
            assert_eq!(civil_from_days(days), (year, month, day), "day {days}");
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            let len = match month {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            day += 1;
            if day > len {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
            }
        }
    }
}
