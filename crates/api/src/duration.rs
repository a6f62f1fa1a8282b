//! Durations as Go writes them: `time.ParseDuration`'s syntax (`300ms`, `1m30s`, `2h45m`,
//! `1.5h`, `0`) and `Duration.String`'s output (`1m0s`), because Ignite's flags
//! (`ignited gitops --interval 30s`, `--timeout 1m0s`) and Docker's ages
//! (`ignite logs --since 10m`) are written that way. Negative durations are refused: no
//! flag here means "before now" with a minus.

use std::time::Duration;

/// What a duration may look like, for error messages.
const ACCEPTED: &str =
    "numbers each followed by a unit of ns, us, ms, s, m or h (300ms, 1m30s, 2h45m, 1.5h), or 0";

/// Why a text is not a duration; each message says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{text:?} is not a duration: want {ACCEPTED}")]
    Invalid { text: String },
    #[error("{text:?} is negative: give a duration of 0 or more ({ACCEPTED})")]
    Negative { text: String },
    #[error("{text:?} is missing a unit after {number:?}: want {ACCEPTED}")]
    MissingUnit { text: String, number: String },
    #[error("{text:?} has an unknown unit {unit:?}: want {ACCEPTED}")]
    UnknownUnit { text: String, unit: String },
    #[error("{text:?} is longer than the longest duration (about 292 years)")]
    TooLong { text: String },
}

const NANOS_PER: [(&str, u128); 9] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),  // µs, MICRO SIGN
    ("\u{3bc}s", 1_000), // μs, GREEK SMALL LETTER MU
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("", 0),
];

/// Parses a duration as Go's `time.ParseDuration` does, refusing negative ones. The
/// longest is Go's, `i64::MAX` nanoseconds.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(body) => (true, body),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let d = parse_unsigned(body, text)?;
    // "-0" is zero, as in Go; any other negative is refused.
    if negative && !d.is_zero() {
        return Err(DurationError::Negative {
            text: text.to_string(),
        });
    }
    Ok(d)
}

/// `body`: `text` without its sign.
fn parse_unsigned(body: &str, text: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid {
        text: text.to_string(),
    };
    let mut rest = body;
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => {
                let len = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                a.split_at(len)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(invalid());
        }
        let unit_len = after
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit {
                text: text.to_string(),
                number: rest[..rest.len() - after.len()].to_string(),
            });
        }
        let Some(&(_, scale)) = NANOS_PER.iter().find(|(u, _)| *u == unit) else {
            return Err(DurationError::UnknownUnit {
                text: text.to_string(),
                unit: unit.to_string(),
            });
        };
        let too_long = || DurationError::TooLong {
            text: text.to_string(),
        };
        // Digits past what fits are beyond a nanosecond's precision anyway: Go drops them.
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| too_long())?
        };
        let mut nanos = int.checked_mul(scale).ok_or_else(too_long)?;
        let mut place = scale;
        for d in frac.bytes().take(30) {
            place /= 10;
            nanos += u128::from(d - b'0') * place;
        }
        total = total.checked_add(nanos).ok_or_else(too_long)?;
        if total > i64::MAX as u128 {
            return Err(too_long());
        }
        rest = after;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| invalid())?;
    // The remainder of a division by 10^9 fits in u32.
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// Writes `d` as Go's `Duration.String` does: `0s`, `500ms`, `1.5s`, `1m0s`, `2h45m0s`.
pub fn format(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    let nanos = d.as_nanos();
    let fraction = |value: u128, per: u128, unit: &str| {
        let whole = value / per;
        let rest = value % per;
        if rest == 0 {
            return format!("{whole}{unit}");
        }
        let width = per.ilog10() as usize;
        let digits = format!("{rest:0width$}");
        format!("{whole}.{}{unit}", digits.trim_end_matches('0'))
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return fraction(nanos, 1_000, "\u{b5}s");
    }
    if nanos < 1_000_000_000 {
        return fraction(nanos, 1_000_000, "ms");
    }
    let secs = d.as_secs();
    let (h, m) = (secs / 3600, secs % 3600 / 60);
    let s = fraction(
        u128::from(secs % 60) * 1_000_000_000 + u128::from(d.subsec_nanos()),
        1_000_000_000,
        "s",
    );
    match (h, m) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn go_examples_parse() {
        // The examples of Go's time.ParseDuration documentation and tests.
        let cases: [(&str, Duration); 16] = [
            ("300ms", ms(300)),
            ("2h45m", Duration::from_secs(2 * 3600 + 45 * 60)),
            ("1h0m0s", Duration::from_secs(3600)),
            ("1m0s", Duration::from_secs(60)),
            ("0", Duration::ZERO),
            ("-0", Duration::ZERO),
            ("+0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("30s", Duration::from_secs(30)),
            ("1.5h", Duration::from_secs(5400)),
            ("1h30m", Duration::from_secs(5400)),
            ("500ms", ms(500)),
            (".5s", ms(500)),
            ("1.s", Duration::from_secs(1)),
            ("1.004s", ms(1004)),
            ("100.00100s", ms(100_001)),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
        assert_eq!(parse("10ns"), Ok(Duration::from_nanos(10)));
        assert_eq!(parse("11us"), Ok(Duration::from_micros(11)));
        assert_eq!(parse("12µs"), Ok(Duration::from_micros(12)));
        assert_eq!(parse("12μs"), Ok(Duration::from_micros(12)));
        assert_eq!(
            parse("3h30m10.5s"),
            Ok(ms((3 * 3600 + 30 * 60 + 10) * 1000 + 500))
        );
        assert_eq!(
            parse("9223372036854775807ns"),
            Ok(Duration::from_nanos(i64::MAX as u64))
        );
    }

    #[test]
    fn bad_durations_say_what_is_accepted() {
        assert!(matches!(
            parse("-1.5h"),
            Err(DurationError::Negative { .. })
        ));
        assert!(matches!(parse("-2s"), Err(DurationError::Negative { .. })));
        for bad in ["", "3", "-", "s", ".", ".s", "+.s", "1.5", "m"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse("30"),
            Err(DurationError::MissingUnit { .. })
        ));
        assert!(matches!(
            parse("10x"),
            Err(DurationError::UnknownUnit { unit, .. }) if unit == "x"
        ));
        assert!(matches!(
            parse("1d"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse("9223372036854775808ns"),
            Err(DurationError::TooLong { .. })
        ));
        let message = parse("soon").unwrap_err().to_string();
        assert!(message.contains("300ms, 1m30s"), "{message}");
        assert!(parse("-1.5h").unwrap_err().to_string().contains("negative"));
    }

    #[test]
    fn formatted_as_go_does() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ns"),
            (Duration::from_nanos(1100), "1.1µs"),
            (ms(500), "500ms"),
            (Duration::from_micros(2200), "2.2ms"),
            (ms(1500), "1.5s"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(5400), "1h30m0s"),
            (ms(3_723_400), "1h2m3.4s"),
        ] {
            assert_eq!(format(d), text);
            assert_eq!(parse(text), Ok(d), "{text} parses back");
        }
    }
}
