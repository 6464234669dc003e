//! The `time` attribute's rule: an RFC 3339 timestamp, exactly as the `time`
//! crate's `OffsetDateTime::parse(s, &Rfc3339)` accepts it (the rule this
//! project has always applied), decided by hand for every form but one.
//!
//! The form: `YYYY-MM-DD`, any one byte (RFC 3339 §5.6 allows a space for
//! `T`; the `time` crate takes any byte there), `hh:mm:ss`, optionally `.`
//! and one or more digits, then `Z`, `z` or `+hh:mm`/`-hh:mm`, and nothing
//! after. The date must exist (February 29 only in leap years), the hour be
//! at most 23, the minute 59, the second 59, the offset's hour 23 and its
//! minute 59. A second of 60 (a leap second, valid only as the last second
//! of a month in UTC) is left to the `time` crate: rare, and it needs the
//! offset applied to the date.

use time::format_description::well_known::Rfc3339;

/// A timestamp's fields as written, for the property test to compare with
/// the `time` crate's parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub nanosecond: u32,
    /// The offset east of UTC in minutes.
    pub offset_minutes: i16,
}

/// Whether `s` is a valid RFC 3339 timestamp (see the module).
pub(crate) fn is_rfc3339(s: &str) -> bool {
    match fast(s.as_bytes()) {
        Some(verdict) => verdict.is_some(),
        None => time::OffsetDateTime::parse(s, &Rfc3339).is_ok(),
    }
}

/// Two ASCII digits at `at` as a number.
#[inline]
fn two(s: &[u8], at: usize) -> Option<u8> {
    match s.get(at..at + 2)? {
        [a @ b'0'..=b'9', b @ b'0'..=b'9'] => Some((a - b'0') * 10 + (b - b'0')),
        _ => None,
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The hand-written decision: `Some(Some(stamp))` valid, `Some(None)`
/// invalid, `None` undecided (a second of 60: ask the `time` crate).
pub(crate) fn fast(s: &[u8]) -> Option<Option<Stamp>> {
    Some(fields(s)).filter(|stamp| stamp.is_none_or(|stamp| stamp.second != 60))
}

/// The fields of `s` if it has the form and every field is in range (a
/// second of 60 included, its date and time not judged further).
fn fields(s: &[u8]) -> Option<Stamp> {
    let year = u16::from(two(s, 0)?) * 100 + u16::from(two(s, 2)?);
    let month = two(s, 5)?;
    let day = two(s, 8)?;
    let hour = two(s, 11)?;
    let minute = two(s, 14)?;
    let second = two(s, 17)?;
    if s.get(4) != Some(&b'-') || s.get(7) != Some(&b'-') || s.get(13) != Some(&b':') || s.get(16) != Some(&b':') {
        return None;
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut at = 19;
    let mut nanosecond = 0u32;
    if s.get(at) == Some(&b'.') {
        at += 1;
        let digits = s.get(at..).unwrap_or_default().iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let mut scale = 100_000_000;
        for &digit in s.get(at..at + digits.min(9)).unwrap_or_default() {
            nanosecond += u32::from(digit - b'0') * scale;
            scale /= 10;
        }
        at += digits;
    }
    let offset_minutes = match s.get(at..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (hours, minutes) = (two(s, at + 1)?, two(s, at + 4)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = i16::from(hours) * 60 + i16::from(minutes);
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return None,
    };
    Some(Stamp { year, month, day, hour, minute, second, nanosecond, offset_minutes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The `time` crate's verdict on `s`, as the fields it parsed.
    fn by_the_time_crate(s: &str) -> Option<Stamp> {
        let t = time::OffsetDateTime::parse(s, &Rfc3339).ok()?;
        let offset = t.offset();
        Some(Stamp {
            year: u16::try_from(t.year()).ok()?,
            month: u8::from(t.month()),
            day: t.day(),
            hour: t.hour(),
            minute: t.minute(),
            second: t.second(),
            nanosecond: t.nanosecond(),
            offset_minutes: i16::from(offset.whole_hours()) * 60 + i16::from(offset.minutes_past_hour()),
        })
    }

    /// Wherever the fast path decides, it decides as the `time` crate does,
    /// with the same fields; where it does not (a second of 60), `is_rfc3339`
    /// is the `time` crate's answer.
    fn agrees(s: &str) -> Result<(), TestCaseError> {
        let expected = by_the_time_crate(s);
        match fast(s.as_bytes()) {
            Some(verdict) => prop_assert_eq!(verdict, expected, "{:?}", s),
            None => prop_assert!(s.get(17..19) == Some("60"), "undecided: {:?}", s),
        }
        prop_assert_eq!(is_rfc3339(s), expected.is_some(), "{:?}", s);
        Ok(())
    }

    /// Timestamps of the form with every field near its bounds.
    fn stamp() -> impl Strategy<Value = String> {
        (
            prop_oneof![
                0u16..=9999,
                Just(0u16),
                Just(1900u16),
                Just(2000u16),
                Just(2024u16),
                Just(2100u16),
                Just(9999u16)
            ],
            0u8..=13,
            0u8..=32,
            prop_oneof![Just(b'T'), Just(b't'), Just(b' '), any::<u8>().prop_filter("ascii", u8::is_ascii)],
            (0u8..=24, 0u8..=60, 0u8..=61),
            prop_oneof![Just(String::new()), "\\.[0-9]{0,12}"],
            prop_oneof![
                Just("Z".to_string()),
                Just("z".to_string()),
                (prop_oneof![Just('+'), Just('-')], 0u8..=24, 0u8..=60)
                    .prop_map(|(s, h, m)| format!("{s}{h:02}:{m:02}")),
            ],
        )
            .prop_map(|(year, month, day, sep, (hour, minute, second), fraction, offset)| {
                format!(
                    "{year:04}-{month:02}-{day:02}{}{hour:02}:{minute:02}:{second:02}{fraction}{offset}",
                    char::from(sep)
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4_000))]

        #[test]
        fn generated_timestamps_get_the_time_crates_verdict_and_value(s in stamp()) {
            agrees(&s)?;
        }

        /// Each generated timestamp mutated: a byte replaced, one removed,
        /// one put in, or cut short.
        #[test]
        fn mutated_timestamps_get_the_time_crates_verdict(
            s in stamp(),
            at in 0usize..40,
            byte in prop_oneof![Just(b'0'), Just(b'9'), Just(b':'), Just(b'-'), Just(b'+'), Just(b'.'), Just(b'Z'), any::<u8>()],
            how in 0u8..4,
        ) {
            let mut bytes = s.into_bytes();
            let at = at.min(bytes.len());
            match how {
                0 if at < bytes.len() => bytes[at] = byte,
                1 if at < bytes.len() => { bytes.remove(at); }
                2 => bytes.insert(at, byte),
                _ => bytes.truncate(at),
            }
            let s = String::from_utf8_lossy(&bytes);
            agrees(&s)?;
        }

        #[test]
        fn any_short_text_gets_the_time_crates_verdict(s in "[0-9:.TZz+ -]{0,32}") {
            agrees(&s)?;
        }
    }

    #[test]
    fn the_forms_at_their_bounds() {
        for valid in [
            "2026-11-29T06:00:00Z",
            "2026-11-29t06:00:00z",
            "2026-11-29 06:00:00.123456789123+23:59",
            "2024-02-29T23:59:59.5-00:00",
            "2000-02-29T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2026-12-31T23:59:60Z",
            "2026-12-31T22:59:60-01:00",
        ] {
            assert!(is_rfc3339(valid), "{valid}");
        }
        for invalid in [
            "",
            "2026-11-29",
            "2026-11-29T06:00:00",
            "2026-11-29T06:00Z",
            "2100-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-11-29T24:00:00Z",
            "2026-11-29T06:60:00Z",
            "2026-11-29T06:00:61Z",
            "2026-11-29T06:00:60Z",
            "2026-11-29T06:00:00.Z",
            "2026-11-29T06:00:00+24:00",
            "2026-11-29T06:00:00+01:60",
            "2026-11-29T06:00:00+0100",
            "2026-11-29T06:00:00Z ",
            "2026-11-29T06:00:00ZZ",
            "+2026-11-29T06:00:00Z",
            "2026-11-29\u{e9}06:00:00Z",
        ] {
            assert!(!is_rfc3339(invalid), "{invalid}");
        }
    }
}
