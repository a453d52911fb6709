//! PostgreSQL's ISO text forms of `date`, `time`, `timestamp` and `timestamptz` (DateStyle `ISO`).
//!
//! Forms: `2024-01-02`, `0044-03-15 BC`, `03:04:05.123456`, `2024-01-02 03:04:05.5`,
//! `2024-01-02 03:04:05+05:30`, `infinity`. Values chrono cannot hold (`infinity`, `24:00:00`,
//! years beyond ±262,000) are [`Temporal::Special`], which the caller keeps as text; anything
//! else that is not in these forms is `None` (malformed).

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};

/// A parsed value, or a valid PostgreSQL value chrono cannot represent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Temporal<T> {
    /// The value.
    Value(T),
    /// Valid, but outside what chrono holds; keep the text.
    Special,
}

/// The largest year magnitude chrono's `NaiveDate` holds (with margin).
const CHRONO_YEAR_LIMIT: i64 = 262_000;

/// Parses `YYYY-MM-DD` with an optional ` BC`.
pub(crate) fn parse_date(text: &str) -> Option<Temporal<NaiveDate>> {
    if is_infinity(text) {
        return Some(Temporal::Special);
    }
    let (text, bc) = strip_bc(text);
    parse_date_part(text, bc)
}

/// Parses `HH:MM:SS[.ffffff]`; `24:00:00` is special.
pub(crate) fn parse_time(text: &str) -> Option<Temporal<NaiveTime>> {
    if text == "24:00:00" {
        return Some(Temporal::Special);
    }
    parse_time_part(text).map(Temporal::Value)
}

/// Parses `YYYY-MM-DD HH:MM:SS[.ffffff][ BC]`.
pub(crate) fn parse_timestamp(text: &str) -> Option<Temporal<NaiveDateTime>> {
    if is_infinity(text) {
        return Some(Temporal::Special);
    }
    let (text, bc) = strip_bc(text);
    let (date, time) = text.split_once(' ')?;
    let time = parse_time_part(time)?;
    Some(match parse_date_part(date, bc)? {
        Temporal::Value(date) => Temporal::Value(date.and_time(time)),
        Temporal::Special => Temporal::Special,
    })
}

/// Parses `YYYY-MM-DD HH:MM:SS[.ffffff]±HH[:MM[:SS]][ BC]` into UTC.
pub(crate) fn parse_timestamptz(text: &str) -> Option<Temporal<DateTime<Utc>>> {
    if is_infinity(text) {
        return Some(Temporal::Special);
    }
    let (text, bc) = strip_bc(text);
    let (date, time_and_offset) = text.split_once(' ')?;
    let offset_start = time_and_offset.find(['+', '-'])?;
    let (time, offset) = time_and_offset.split_at(offset_start);
    let time = parse_time_part(time)?;
    let offset_seconds = parse_offset(offset)?;
    let local = match parse_date_part(date, bc)? {
        Temporal::Value(date) => date.and_time(time),
        Temporal::Special => return Some(Temporal::Special),
    };
    let utc = local.checked_sub_signed(TimeDelta::seconds(offset_seconds));
    Some(utc.map_or(Temporal::Special, |utc| Temporal::Value(utc.and_utc())))
}

fn is_infinity(text: &str) -> bool {
    matches!(text, "infinity" | "-infinity")
}

fn strip_bc(text: &str) -> (&str, bool) {
    match text.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (text, false),
    }
}

fn parse_date_part(text: &str, bc: bool) -> Option<Temporal<NaiveDate>> {
    let mut parts = text.splitn(3, '-');
    let year = parse_digits(parts.next()?, 1..=7)?;
    let month = parse_digits(parts.next()?, 2..=2)?;
    let day = parse_digits(parts.next()?, 2..=2)?;
    let year = if bc { 1 - year } else { year };
    if year.abs() > CHRONO_YEAR_LIMIT {
        return Some(Temporal::Special);
    }
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(year).ok()?,
        u32::try_from(month).ok()?,
        u32::try_from(day).ok()?,
    )?;
    Some(Temporal::Value(date))
}

fn parse_time_part(text: &str) -> Option<NaiveTime> {
    let (clock, fraction) = match text.split_once('.') {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (text, None),
    };
    let mut parts = clock.splitn(3, ':');
    let hour = parse_digits(parts.next()?, 2..=2)?;
    let minute = parse_digits(parts.next()?, 2..=2)?;
    let second = parse_digits(parts.next()?, 2..=2)?;
    let micros = match fraction {
        Some(fraction) => parse_fraction_micros(fraction)?,
        None => 0,
    };
    NaiveTime::from_hms_micro_opt(
        u32::try_from(hour).ok()?,
        u32::try_from(minute).ok()?,
        u32::try_from(second).ok()?,
        micros,
    )
}

/// `±HH`, `±HH:MM` or `±HH:MM:SS` as seconds east of UTC.
fn parse_offset(text: &str) -> Option<i64> {
    let (sign, rest) = match text.split_at_checked(1)? {
        ("+", rest) => (1, rest),
        ("-", rest) => (-1, rest),
        _ => return None,
    };
    let mut seconds = 0;
    let mut scale = 3600;
    for part in rest.splitn(3, ':') {
        let value = parse_digits(part, 2..=2)?;
        if value >= 60 && scale != 3600 {
            return None;
        }
        seconds += value * scale;
        scale /= 60;
    }
    Some(sign * seconds)
}

/// One to six fractional digits as microseconds.
fn parse_fraction_micros(fraction: &str) -> Option<u32> {
    let value = parse_digits(fraction, 1..=6)?;
    let padding = 6 - u32::try_from(fraction.len()).ok()?;
    u32::try_from(value).ok()?.checked_mul(10u32.pow(padding))
}

/// ASCII digits only, with a length in `lengths`.
fn parse_digits(text: &str, lengths: std::ops::RangeInclusive<usize>) -> Option<i64> {
    let valid = lengths.contains(&text.len()) && text.bytes().all(|byte| byte.is_ascii_digit());
    if valid { text.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_values_are_kept_apart() {
        assert_eq!(parse_date("infinity"), Some(Temporal::Special));
        assert_eq!(parse_date("-infinity"), Some(Temporal::Special));
        assert_eq!(parse_time("24:00:00"), Some(Temporal::Special));
        assert_eq!(parse_timestamp("infinity"), Some(Temporal::Special));
        assert_eq!(parse_timestamptz("-infinity"), Some(Temporal::Special));
        assert_eq!(parse_date("5874897-12-31"), Some(Temporal::Special));
        assert_eq!(
            parse_timestamp("5874897-12-31 00:00:00"),
            Some(Temporal::Special)
        );
        assert_eq!(
            parse_timestamptz("5874897-12-31 00:00:00+00"),
            Some(Temporal::Special)
        );
    }

    #[test]
    fn bc_dates_use_astronomical_years() {
        let date = NaiveDate::from_ymd_opt(-43, 3, 15).map(Temporal::Value);
        assert_eq!(parse_date("0044-03-15 BC"), date);
    }

    #[test]
    fn offsets_with_seconds_are_applied() {
        let parsed = parse_timestamptz("1900-01-01 00:00:00+00:53:28");
        let expected = NaiveDate::from_ymd_opt(1899, 12, 31)
            .and_then(|date| date.and_hms_opt(23, 6, 32))
            .map(|local| Temporal::Value(local.and_utc()));
        assert_eq!(parsed, expected);
    }

    #[test]
    fn malformed_text_is_rejected() {
        for text in [
            "",
            "2024-1-02",
            "2024-01-02x",
            "24-01",
            "2024-02-30",
            "+2024-01-01",
        ] {
            assert_eq!(parse_date(text), None, "{text:?}");
        }
        for text in [
            "",
            "3:04:05",
            "03:04",
            "03:04:05.",
            "03:04:05.1234567",
            "25:00:00",
        ] {
            assert_eq!(parse_time(text), None, "{text:?}");
        }
        for text in ["2024-01-02", "2024-01-02T03:04:05", "2024-01-02 03:04"] {
            assert_eq!(parse_timestamp(text), None, "{text:?}");
        }
        for text in [
            "2024-01-02 03:04:05",
            "2024-01-02 03:04:05+",
            "2024-01-02 03:04:05+1",
            "2024-01-02 03:04:05+01:60",
            "2024-01-02 03:04:05+01:00:00:00",
            "2024-01-02 03:04:05*01",
        ] {
            assert_eq!(parse_timestamptz(text), None, "{text:?}");
        }
    }
}
