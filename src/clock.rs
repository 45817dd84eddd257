//! Times as people write and read them: RFC 3339 in UTC for the API and
//! JSON output, local wall-clock time for tables, and `--since`/`--until`
//! values that are either a time or a duration back from now.

use std::time::Duration;

use crate::config::parse_duration;

/// Formats ms since the epoch as RFC 3339 in UTC with milliseconds, like
/// `2025-01-31T14:05:09.123Z`.
pub fn rfc3339(ms: u64) -> String {
    let (date, secs_of_day) = split_days(ms / 1000);
    let (y, m, d) = civil_from_days(date);
    let (hh, mm, ss) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    format!(
        "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:03}Z",
        ms % 1000
    )
}

/// Formats ms since the epoch in the local time zone, like
/// `2025-01-31 15:05:09`; falls back to UTC when the zone is unknown.
pub fn local(ms: u64) -> String {
    match local_parts(ms / 1000) {
        Some((y, mo, d, h, mi, s)) => format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"),
        None => {
            let utc = rfc3339(ms);
            format!("{} {}Z", &utc[..10], &utc[11..19])
        }
    }
}

#[cfg(unix)]
fn local_parts(secs: u64) -> Option<(i64, u32, u32, u32, u32, u32)> {
    let time = libc::time_t::try_from(secs).ok()?;
    // SAFETY: localtime_r only writes into `tm`, which lives on this stack
    // frame; a zeroed `tm` is a valid value of a plain C struct.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&time, &mut tm).is_null() {
            return None;
        }
        tm
    };
    let field = |v: libc::c_int| u32::try_from(v).ok();
    Some((
        i64::from(tm.tm_year) + 1900,
        field(tm.tm_mon + 1)?,
        field(tm.tm_mday)?,
        field(tm.tm_hour)?,
        field(tm.tm_min)?,
        field(tm.tm_sec)?,
    ))
}

#[cfg(not(unix))]
fn local_parts(_secs: u64) -> Option<(i64, u32, u32, u32, u32, u32)> {
    None
}

/// Reads a point in time given as a duration back from `now_ms` (`"2h"`,
/// `"30m"`, `"7d"`), an RFC 3339 time (`"2025-01-31T14:05:09Z"`, any offset,
/// optional fraction), a date (`"2025-01-31"`, midnight UTC) or ms since the
/// epoch.
pub fn parse_instant(text: &str, now_ms: u64) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(ago) = parse_duration(text) {
        let ago = u64::try_from(ago.as_millis()).unwrap_or(u64::MAX);
        return Ok(now_ms.saturating_sub(ago));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && text.len() > 10 {
        return text.parse().map_err(|_| format!("{text:?} is too large"));
    }
    parse_rfc3339(text).ok_or_else(|| {
        format!(
            "{text:?} is not a time (expected a duration like \"2h\", \
             a date like \"2025-01-31\" or a time like \"2025-01-31T14:05:09Z\")"
        )
    })
}

/// Reads `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn parse_rfc3339(text: &str) -> Option<u64> {
    let num = |s: &str| -> Option<i64> {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let date = text.get(..10)?;
    let (y, m, d) = (
        num(date.get(..4)?)?,
        num(date.get(5..7)?)?,
        num(date.get(8..10)?)?,
    );
    if date.as_bytes()[4] != b'-' || date.as_bytes()[7] != b'-' || !(1..=12).contains(&m) {
        return None;
    }
    if !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m as u32, d as u32);
    let rest = &text[10..];
    if rest.is_empty() {
        return u64::try_from(days * 86_400_000).ok();
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (h, mi, s) = (
        num(rest.get(..2)?)?,
        num(rest.get(3..5)?)?,
        num(rest.get(6..8)?)?,
    );
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &rest[8..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        let padded = format!("{:0<3}", &frac[..digits.min(3)]);
        millis = num(&padded)?;
        rest = &frac[digits..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, om) = (num(rest.get(1..3)?)?, num(rest.get(4..6)?)?);
            if rest.len() != 6 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_secs;
    u64::try_from(secs * 1000 + millis).ok()
}

/// Formats a latency for people: `850µs`, `12.3ms`, `2.10s`.
pub fn latency(duration: Duration) -> String {
    let us = duration.as_micros();
    if us < 1000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{:.2}s", us as f64 / 1_000_000.0)
    }
}

fn split_days(secs: u64) -> (i64, u64) {
    let days = i64::try_from(secs / 86_400).expect("u64 seconds / 86400 fits in i64");
    (days, secs % 86_400)
}

/// Days since 1970-01-01 to a civil date (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A civil date to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let ms = 1_738_332_309_123;
        assert_eq!(rfc3339(ms), "2025-01-31T14:05:09.123Z");
        assert_eq!(parse_instant("2025-01-31T14:05:09.123Z", 0), Ok(ms));
        assert_eq!(parse_instant("2025-01-31T15:05:09.123+01:00", 0), Ok(ms));
        assert_eq!(parse_instant("2025-01-31", 0), Ok(1_738_281_600_000));
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn durations_count_back_from_now() {
        assert_eq!(parse_instant("2h", 10_000_000), Ok(10_000_000 - 7_200_000));
        assert_eq!(parse_instant("1738332309123", 0), Ok(1_738_332_309_123));
    }

    #[test]
    fn bad_times_are_named() {
        let err = parse_instant("yesterday", 0).expect_err("not a time");
        assert!(err.contains("\"yesterday\" is not a time"), "{err}");
        assert!(parse_instant("2025-13-01", 0).is_err());
        assert!(parse_instant("2025-01-31T25:00:00Z", 0).is_err());
    }

    #[test]
    fn latencies_read_well() {
        assert_eq!(latency(Duration::from_micros(850)), "850µs");
        assert_eq!(latency(Duration::from_micros(12_345)), "12.3ms");
        assert_eq!(latency(Duration::from_millis(2_100)), "2.10s");
    }
}
