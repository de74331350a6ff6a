//! Human durations in specs: `"250ms"`, `"10s"`, `"1.5s"`, `"2m"`, and the bounds on them.
//!
//! Every duration troupe accepts from a person or a program is at most [`MAX_DURATION`], checked
//! here, once, so no later arithmetic can overflow on user input. Deadlines are still computed
//! with [`checked_deadline`], which saturates instead of panicking, because a deadline may come
//! from a sum of bounded parts.

use std::time::{Duration, Instant};

/// The longest duration troupe accepts anywhere (timeouts, intervals, sleeps): 7 days, written
/// `"168h"` or `"10080m"`. Nothing a test harness waits for takes longer, and the bound keeps
/// every deadline far from the limits of [`Instant`].
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where [`checked_deadline`] saturates: about 30 years from now, as tokio's own far future.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

const EXPECTED: &str = "expected a duration such as \"500ms\", \"10s\" or \"2m\"";

/// Parses `"250ms"`, `"10s"`, `"1.5s"`, `"2m"` or `"1h"`; a bare number is refused because its
/// unit would be a guess. Never panics: a negative, non-finite or overlong duration (more than
/// [`MAX_DURATION`]) is an error that says what is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err(format!(
            "`{text}` is negative; expected a duration of 0ms or more, such as \"500ms\", \"10s\" or \"2m\""
        ));
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!("`{text}` is not a duration; {EXPECTED}"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; {EXPECTED}"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "" => return Err(format!("`{text}` has no unit; {EXPECTED}")),
        other => return Err(format!("unknown unit `{other}` in `{text}`; {EXPECTED}")),
    };
    // Digits and dots only, so never negative or NaN; but "9999...h" overflows to infinity.
    if !seconds.is_finite() || seconds > MAX_DURATION.as_secs_f64() {
        return Err(too_long(text));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| too_long(text))
}

fn too_long(text: &str) -> String {
    format!("`{text}` is too long: a duration is at most 7 days, written \"168h\"")
}

/// `now + d`, or a far-future instant (about 30 years on) when `d` is longer than that or the
/// sum would not fit in an [`Instant`]. Use it for every `Instant + timeout`: it never panics,
/// and a deadline that far away is never reached in practice.
pub fn checked_deadline(now: Instant, d: Duration) -> Instant {
    if let Some(t) = now.checked_add(d.min(FAR_FUTURE)) {
        return t;
    }
    // `now` is itself near the end of `Instant`'s range: go as far as it allows.
    let mut deadline = now;
    let mut step = d.min(FAR_FUTURE);
    while !step.is_zero() {
        match deadline.checked_add(step) {
            Some(t) => deadline = t,
            None => step /= 2,
        }
    }
    deadline
}

/// Formats a duration the way a person reads it: `850ms`, `1.25s`, `2m05s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1.0 {
        format!("{:.2}ms", ms)
    } else if ms < 1000.0 {
        format!("{:.0}ms", ms)
    } else if ms < 60_000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else {
        let s = d.as_secs();
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration(" 0ms ").unwrap(), Duration::ZERO);
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(
            parse_duration("3 weeks")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn a_huge_duration_from_the_issue_is_an_error_not_a_panic() {
        // Panicked in `Duration::from_secs_f64` before durations were bounded.
        insta::assert_snapshot!(
            parse_duration("99999999999999999999h").unwrap_err(),
            @r#"`99999999999999999999h` is too long: a duration is at most 7 days, written "168h""#
        );
    }

    #[test]
    fn durations_are_bounded_by_seven_days_inclusive() {
        assert_eq!(MAX_DURATION, Duration::from_secs(604_800));
        for max in ["168h", "10080m", "604800s", "604800000ms", "167.99h"] {
            let d = parse_duration(max).unwrap_or_else(|e| panic!("{max}: {e}"));
            assert!(d <= MAX_DURATION, "{max}");
        }
        for over in ["168.0001h", "10081m", "604801s", "1e400s", "8760h"] {
            let e = parse_duration(over).unwrap_err();
            assert!(
                e.contains("at most 7 days") || e.contains("unknown unit"),
                "{over}: {e}"
            );
        }
        let e = parse_duration("10081m").unwrap_err();
        assert!(e.contains("at most 7 days, written \"168h\""), "{e}");
        let long = format!("{}s", "9".repeat(400));
        assert!(parse_duration(&long).unwrap_err().contains("too long"));
    }

    #[test]
    fn negative_and_non_finite_durations_are_errors() {
        insta::assert_snapshot!(
            parse_duration("-5ms").unwrap_err(),
            @r#"`-5ms` is negative; expected a duration of 0ms or more, such as "500ms", "10s" or "2m""#
        );
        for bad in [
            "-0s", "NaNs", "nan", "infs", "inf ms", "-inf s", "+5s", ".s", "..5s", "1.2.3s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    /// A small deterministic generator, so the property loop needs no dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Odd strings: mixtures of digits, dots, signs, exponents, units, spaces and non-ASCII.
    pub(crate) fn odd_strings(seed: u64, count: usize) -> Vec<String> {
        const PIECES: &[&str] = &[
            "0",
            "1",
            "9",
            "99999999999999999999",
            ".",
            "-",
            "+",
            "e",
            "E",
            "e308",
            "1e-9",
            "ms",
            "s",
            "m",
            "h",
            "d",
            " ",
            "\t",
            "nan",
            "inf",
            "NaN",
            "µ",
            "∞",
            "bit",
            "kbit",
            "mbit",
            "gbit",
            "bps",
            "mbps",
            "%",
            "0.0000001",
            "18446744073709551615",
            "\u{0}",
        ];
        let mut rng = XorShift(seed);
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let len = rng.next() % 6;
            let mut s = String::new();
            for _ in 0..=len {
                s.push_str(PIECES[(rng.next() % PIECES.len() as u64) as usize]);
            }
            out.push(s);
        }
        out
    }

    #[test]
    fn no_string_makes_parse_duration_panic_or_exceed_the_bound() {
        let mut fixed: Vec<String> = [
            "",
            " ",
            "ms",
            "0",
            "0ms",
            "1e5s",
            "1e400h",
            "18446744073709551615s",
            "18446744073709551616h",
            "0.000000000001ms",
            "-",
            "-0",
            "--1s",
            "1..s",
            "1.s",
            ".5s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        fixed.push(format!("{}.{}ms", "9".repeat(1000), "9".repeat(1000)));
        for s in fixed.iter().chain(odd_strings(0x5eed, 20_000).iter()) {
            if let Ok(d) = parse_duration(s) {
                assert!(d <= MAX_DURATION, "{s:?} gave {d:?}");
            }
        }
    }

    #[test]
    fn deadlines_saturate_instead_of_overflowing() {
        let now = Instant::now();
        assert_eq!(
            checked_deadline(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert_eq!(checked_deadline(now, MAX_DURATION), now + MAX_DURATION);
        // `now + Duration::MAX` panics; the checked deadline is merely far away.
        let far = checked_deadline(now, Duration::MAX);
        assert!(far >= now + Duration::from_secs(29 * 365 * 24 * 3600));
        assert_eq!(far, checked_deadline(now, Duration::from_millis(u64::MAX)));
        assert!(far > checked_deadline(now, MAX_DURATION));
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_millis(1250)), "1.25s");
        assert_eq!(format_duration(Duration::from_secs(125)), "2m05s");
    }
}
