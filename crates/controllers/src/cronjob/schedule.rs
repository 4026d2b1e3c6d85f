//! Cron schedules as upstream parses them (robfig/cron's standard parser):
//! five fields (minute hour day-of-month month day-of-week) with `*`, `?`,
//! ranges, steps, lists and month/weekday names, the `@yearly`-style
//! descriptors and `@every <duration>`, evaluated in a time zone.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

const STAR: u64 = 1 << 63;

#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Spec {
        minute: u64,
        hour: u64,
        dom: u64,
        month: u64,
        dow: u64,
        tz: Option<String>,
    },
    /// `@every`: a constant delay (whole seconds, at least 1 s).
    Every(i64),
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn parse_int(s: &str, names: &[&str], offset: u32) -> Result<u32, String> {
    let l = s.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == l) {
        return Ok(i as u32 + offset);
    }
    s.parse::<u32>().map_err(|_| {
        format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax")
    })
}

/// One field: comma-separated `*`/`?`/`a`/`a-b` with an optional `/step`.
fn parse_field(
    field: &str,
    min: u32,
    max: u32,
    names: &[&str],
    offset: u32,
) -> Result<u64, String> {
    let mut bits = 0u64;
    for expr in field.split(',') {
        let (range, step) = match expr.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (expr, None),
        };
        let (start, mut end, mut extra);
        if range == "*" || range == "?" {
            start = min;
            end = max;
            extra = STAR;
        } else {
            extra = 0;
            match range.split_once('-') {
                Some((a, b)) => {
                    start = parse_int(a, names, offset)?;
                    end = parse_int(b, names, offset)?;
                }
                None => {
                    start = parse_int(range, names, offset)?;
                    end = start;
                }
            }
        }
        let step = match step {
            None => 1,
            Some(s) => {
                let n: u32 = s.parse().map_err(|_| {
                    format!(
                        "failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax"
                    )
                })?;
                // "N/step" means "N-max/step".
                if !range.contains('-') && range != "*" && range != "?" {
                    end = max;
                }
                if n > 1 {
                    extra = 0;
                }
                n
            }
        };
        if start < min {
            return Err(format!(
                "beginning of range ({start}) below minimum ({min}): {expr}"
            ));
        }
        if end > max {
            return Err(format!(
                "end of range ({end}) above maximum ({max}): {expr}"
            ));
        }
        if start > end {
            return Err(format!(
                "beginning of range ({start}) beyond end of range ({end}): {expr}"
            ));
        }
        if step == 0 {
            return Err(format!("step of range should be a positive number: {expr}"));
        }
        let mut i = start;
        while i <= end {
            bits |= 1 << i;
            i += step;
        }
        bits |= extra;
    }
    Ok(bits)
}

/// Parses a Go duration like `1h30m`, `90s`, `1m` (for `@every`).
fn parse_duration(s: &str) -> Result<i64, String> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if (c == 'm' || c == 'u' || c == 'n' || c == 'µ') && chars.peek() == Some(&'s') {
            unit.push(chars.next().unwrap_or('s'));
        }
        let n: f64 = num
            .parse()
            .map_err(|_| format!("time: invalid duration {s:?}"))?;
        num.clear();
        let secs = match unit.as_str() {
            "h" => n * 3600.0,
            "m" => n * 60.0,
            "s" => n,
            "ms" => n / 1e3,
            "us" | "µs" => n / 1e6,
            "ns" => n / 1e9,
            _ => return Err(format!("time: unknown unit {unit:?} in duration {s:?}")),
        };
        total += secs;
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(format!("time: missing unit in duration {s:?}"));
    }
    Ok((total.floor() as i64).max(1))
}

impl Schedule {
    /// Parses like `cron.ParseStandard` (with a `TZ=`/`CRON_TZ=` prefix).
    pub fn parse(spec: &str) -> Result<Schedule, String> {
        let mut spec = spec.trim();
        if spec.is_empty() {
            return Err("empty spec string".into());
        }
        let mut tz = None;
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            let (head, rest) = spec.split_once(' ').unwrap_or((spec, ""));
            let name = head.split_once('=').map(|x| x.1).unwrap_or_default();
            TimeZone::get(name).map_err(|e| format!("provided bad location {name}: {e}"))?;
            tz = Some(name.to_string());
            spec = rest.trim();
        }
        if let Some(d) = spec.strip_prefix('@') {
            let fields = match d {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => {
                    if let Some(rest) = d.strip_prefix("every ") {
                        return Ok(Schedule::Every(parse_duration(rest.trim())?));
                    }
                    return Err(format!("unrecognized descriptor: {spec}"));
                }
            };
            let mut s = Schedule::parse(fields)?;
            if let Schedule::Spec { tz: t, .. } = &mut s {
                *t = tz;
            }
            return Ok(s);
        }
        let f: Vec<&str> = spec.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: {spec}",
                f.len()
            ));
        }
        Ok(Schedule::Spec {
            minute: parse_field(f[0], 0, 59, &[], 0)?,
            hour: parse_field(f[1], 0, 23, &[], 0)?,
            dom: parse_field(f[2], 1, 31, &[], 0)?,
            month: parse_field(f[3], 1, 12, &MONTHS, 1)?,
            dow: parse_field(f[4], 0, 6, &DAYS, 0)?,
            tz,
        })
    }

    /// The first activation strictly after `t`, evaluated in `zone` (unless
    /// the spec named its own); None if there is none within five years.
    pub fn next(&self, t: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        let (minute, hour, dom, month, dow, tz) = match self {
            Schedule::Every(d) => {
                // robfig: round down to the second, then add.
                return Timestamp::from_second(t.as_second() + d).ok();
            }
            Schedule::Spec {
                minute,
                hour,
                dom,
                month,
                dow,
                tz,
            } => (*minute, *hour, *dom, *month, *dow, tz),
        };
        let zone = match tz {
            Some(n) => TimeZone::get(n).ok()?,
            None => zone.clone(),
        };
        // Start at the next whole minute.
        let start =
            Timestamp::from_second(t.as_second() - t.as_second().rem_euclid(60) + 60).ok()?;
        let local: DateTime = start.to_zoned(zone.clone()).datetime();
        let mut date: Date = local.date();
        let first = date;
        let day_matches = |d: Date| {
            let dm = dom & (1 << d.day()) != 0;
            let wm = dow & (1 << d.weekday().to_sunday_zero_offset()) != 0;
            if dom & STAR != 0 || dow & STAR != 0 {
                dm && wm
            } else {
                dm || wm
            }
        };
        for _ in 0..(366 * 5) {
            if month & (1 << date.month()) != 0 && day_matches(date) {
                for h in 0..24i8 {
                    if hour & (1 << h) == 0 {
                        continue;
                    }
                    for m in 0..60i8 {
                        if minute & (1 << m) == 0 {
                            continue;
                        }
                        let dt = date.at(h, m, 0, 0);
                        if date == first && dt < local {
                            continue;
                        }
                        let Ok(z) = dt.to_zoned(zone.clone()) else {
                            continue;
                        };
                        let ts = z.timestamp();
                        if ts > t {
                            return Some(ts);
                        }
                    }
                }
            }
            date = date.checked_add(1.day()).ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, from: &str) -> String {
        Schedule::parse(spec)
            .unwrap()
            .next(ts(from), &TimeZone::UTC)
            .map(|t| t.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn fields() {
        assert_eq!(
            next("*/1 * * * *", "2024-01-01T00:00:00Z"),
            "2024-01-01T00:01:00Z"
        );
        assert_eq!(
            next("* * * * *", "2024-01-01T00:00:30Z"),
            "2024-01-01T00:01:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2024-01-01T00:16:00Z"),
            "2024-01-01T00:30:00Z"
        );
        assert_eq!(
            next("5-10/2 * * * *", "2024-01-01T00:07:00Z"),
            "2024-01-01T00:09:00Z"
        );
        assert_eq!(
            next("5/20 * * * *", "2024-01-01T00:26:00Z"),
            "2024-01-01T00:45:00Z"
        );
        assert_eq!(
            next("0 9,17 * * *", "2024-01-01T10:00:00Z"),
            "2024-01-01T17:00:00Z"
        );
        assert_eq!(
            next("0 0 1 jan,JUL *", "2024-02-01T00:00:00Z"),
            "2024-07-01T00:00:00Z"
        );
        assert_eq!(
            next("0 0 * * mon-fri", "2024-01-06T00:00:00Z"),
            "2024-01-08T00:00:00Z"
        );
        assert_eq!(
            next("0 0 29 2 *", "2024-03-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        // Both day fields restricted: either matches (Jan 5 2024 is a Friday).
        assert_eq!(
            next("0 0 10 * 5", "2024-01-01T00:00:00Z"),
            "2024-01-05T00:00:00Z"
        );
        // A starred day field: both must match.
        assert_eq!(
            next("0 0 */1 * 5", "2024-01-01T00:00:00Z"),
            "2024-01-05T00:00:00Z"
        );
        assert_eq!(next("0 0 31 2 *", "2024-01-01T00:00:00Z"), "");
    }

    #[test]
    fn descriptors() {
        assert_eq!(
            next("@hourly", "2024-01-01T00:00:00Z"),
            "2024-01-01T01:00:00Z"
        );
        assert_eq!(
            next("@daily", "2024-01-01T05:00:00Z"),
            "2024-01-02T00:00:00Z"
        );
        assert_eq!(
            next("@midnight", "2024-01-01T05:00:00Z"),
            "2024-01-02T00:00:00Z"
        );
        assert_eq!(
            next("@weekly", "2024-01-01T00:00:00Z"),
            "2024-01-07T00:00:00Z"
        );
        assert_eq!(
            next("@monthly", "2024-01-15T00:00:00Z"),
            "2024-02-01T00:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2024-01-15T00:00:00Z"),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@annually", "2024-01-15T00:00:00Z"),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@every 90s", "2024-01-01T00:00:00Z"),
            "2024-01-01T00:01:30Z"
        );
    }

    #[test]
    fn time_zones() {
        let s = Schedule::parse("0 9 * * *").unwrap();
        let ny = TimeZone::get("America/New_York").unwrap();
        // 09:00 EST is 14:00 UTC in winter, 13:00 UTC in summer.
        assert_eq!(
            s.next(ts("2024-01-01T00:00:00Z"), &ny).unwrap().to_string(),
            "2024-01-01T14:00:00Z"
        );
        assert_eq!(
            s.next(ts("2024-07-01T00:00:00Z"), &ny).unwrap().to_string(),
            "2024-07-01T13:00:00Z"
        );
        assert_eq!(
            next("CRON_TZ=Asia/Tokyo 0 9 * * *", "2024-01-01T00:00:00Z"),
            "2024-01-02T00:00:00Z"
        );
    }

    #[test]
    fn errors() {
        assert!(Schedule::parse("* * * *").is_err());
        assert!(Schedule::parse("60 * * * *").is_err());
        assert!(Schedule::parse("* * * 13 *").is_err());
        assert!(Schedule::parse("* * * * 7").is_err());
        assert!(Schedule::parse("@fortnightly").is_err());
        assert!(Schedule::parse("5-1 * * * *").is_err());
        assert!(Schedule::parse("TZ=Nowhere/City * * * * *").is_err());
    }
}
