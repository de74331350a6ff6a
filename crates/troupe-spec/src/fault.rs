//! Typed network-fault parameters: a [`Rate`], a [`Percent`] and the [`Degrade`] they make up
//! with a delay and a jitter.
//!
//! They are parsed and range-checked here, once, for every way a fault arrives (a scenario
//! step, `troupe degrade`, a control request), so both network backends (netem in namespaces,
//! the link proxies) receive values they can apply as they are and never have to guess what an
//! odd setting means. A value of these types is always in range: the fields are private and every
//! constructor checks.
//!
//! ```
//! use std::time::Duration;
//! use troupe_spec::fault::{Degrade, Percent, Rate};
//!
//! let rate: Rate = "1.5mbit".parse().unwrap();
//! assert_eq!(rate.bits_per_second(), 1_500_000);
//! assert_eq!(rate.to_string(), "1500000bit");
//!
//! let d = Degrade::new(Duration::from_millis(50), Duration::ZERO, Percent::new(1.5).unwrap(), Some(rate))
//!     .unwrap();
//! assert_eq!(d.to_string(), "delay 50ms, loss 1.5%, rate 1500000bit");
//! assert!(Degrade::new(Duration::ZERO, Duration::ZERO, Percent::ZERO, None).is_err());
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::format_duration;

/// The longest delay and the longest jitter a degraded link accepts: 60 s. Longer holds would
/// make a test wait on TCP retransmission timers rather than on the system under test.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

const RATE_EXPECTED: &str = "expected a number and a unit such as \"1mbit\", \"500kbit\" or \
                             \"10mbps\" (bit, kbit, mbit, gbit: bits per second; bps, kbps, mbps, \
                             gbps: bytes per second)";

/// A link's bandwidth, as netem writes it: `1mbit`, `500kbit`, `10mbps` (megabytes per second),
/// `2000bps`, `1gbit`, `800bit`. Between 8 bit/s (one byte per second) and 100 gbit/s.
///
/// Units are case-insensitive and follow `tc`: `bit`, `kbit`, `mbit`, `gbit`, `tbit` are bits per
/// second (powers of 1000), `bps`, `kbps`, `mbps`, `gbps`, `tbps` bytes per second, and the IEC
/// forms (`kibit`, `mibps`, ...) powers of 1024. The number may have decimals (`1.5mbit`); a
/// bare number is refused because its unit would be a guess. [`fmt::Display`] gives the canonical
/// netem form, `{bits}bit`, which `tc` and [`Rate::parse`] both read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Rate {
    bits: u64,
}

impl Rate {
    /// The slowest rate: one byte per second.
    pub const MIN_BITS_PER_SECOND: u64 = 8;
    /// The fastest rate, 100 gbit/s; anything faster is surely a typo.
    pub const MAX_BITS_PER_SECOND: u64 = 100_000_000_000;

    /// Parses a netem-style rate; see [`Rate`] for the forms accepted.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let text = text.trim();
        let lower = text.to_ascii_lowercase();
        let split = lower
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(lower.len());
        let (number, unit) = lower.split_at(split);
        let value: f64 = match number.parse() {
            Ok(v) if !number.is_empty() => v,
            _ => return Err(format!("`{text}` is not a rate; {RATE_EXPECTED}")),
        };
        let per_bit = match unit.trim() {
            "bit" => 1.0,
            "kbit" => 1e3,
            "mbit" => 1e6,
            "gbit" => 1e9,
            "tbit" => 1e12,
            "kibit" => 1024.0,
            "mibit" => 1024.0 * 1024.0,
            "gibit" => 1024.0 * 1024.0 * 1024.0,
            "tibit" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
            "bps" => 8.0,
            "kbps" => 8e3,
            "mbps" => 8e6,
            "gbps" => 8e9,
            "tbps" => 8e12,
            "kibps" => 8.0 * 1024.0,
            "mibps" => 8.0 * 1024.0 * 1024.0,
            "gibps" => 8.0 * 1024.0 * 1024.0 * 1024.0,
            "tibps" => 8.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
            "" => return Err(format!("`{text}` has no unit; {RATE_EXPECTED}")),
            other => {
                return Err(format!(
                    "unknown unit `{other}` in `{text}`; {RATE_EXPECTED}"
                ));
            }
        };
        let bits = (value * per_bit).round();
        // Digits and dots only, so never negative or NaN; but a long number is infinite.
        if !bits.is_finite() || bits > Self::MAX_BITS_PER_SECOND as f64 {
            return Err(too_fast(text));
        }
        // In range of u64 now, so the cast is exact.
        Rate::from_bits_per_second(bits as u64).map_err(|_| too_slow(text, bits == 0.0))
    }

    /// A rate of `bits` per second, from 8 up to 100 gbit/s.
    pub fn from_bits_per_second(bits: u64) -> Result<Rate, String> {
        let text = format!("{bits}bit");
        if bits < Self::MIN_BITS_PER_SECOND {
            Err(too_slow(&text, bits == 0))
        } else if bits > Self::MAX_BITS_PER_SECOND {
            Err(too_fast(&text))
        } else {
            Ok(Rate { bits })
        }
    }

    pub fn bits_per_second(&self) -> u64 {
        self.bits
    }

    /// Whole bytes per second, rounded down; at least 1.
    pub fn bytes_per_second(&self) -> u64 {
        self.bits / 8
    }
}

fn too_fast(text: &str) -> String {
    format!("`{text}` is too fast: a rate is at most 100gbit; expected e.g. \"1mbit\"")
}

fn too_slow(text: &str, zero: bool) -> String {
    if zero {
        format!(
            "`{text}` is zero: a rate must be more than 0 (to stop traffic, cut or isolate \
             instead); expected e.g. \"1mbit\""
        )
    } else {
        format!(
            "`{text}` is too slow: a rate is at least 8bit (one byte per second); expected e.g. \"1mbit\""
        )
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}bit", self.bits)
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Rate, String> {
        Rate::parse(s)
    }
}

impl TryFrom<String> for Rate {
    type Error = String;

    fn try_from(s: String) -> Result<Rate, String> {
        Rate::parse(&s)
    }
}

impl From<Rate> for String {
    fn from(r: Rate) -> String {
        r.to_string()
    }
}

/// A percentage from 0 to 100 inclusive, finite; e.g. the share of packets a link loses.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Percent(f64);

impl Percent {
    pub const ZERO: Percent = Percent(0.0);

    /// Refuses NaN, infinities and anything outside 0..=100.
    pub fn new(value: f64) -> Result<Percent, String> {
        if (0.0..=100.0).contains(&value) {
            // `-0.0` passes the range check; store it as `0.0` so it prints as `0%`.
            Ok(Percent(value + 0.0))
        } else {
            Err(format!(
                "expected a percentage from 0 to 100, e.g. 1.5; found {}",
                number(value)
            ))
        }
    }

    /// The percentage, 0 to 100.
    pub fn get(self) -> f64 {
        self.0
    }

    /// The share, 0 to 1 (a probability).
    pub fn fraction(self) -> f64 {
        self.0 / 100.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl TryFrom<f64> for Percent {
    type Error = String;

    fn try_from(value: f64) -> Result<Percent, String> {
        Percent::new(value)
    }
}

impl From<Percent> for f64 {
    fn from(p: Percent) -> f64 {
        p.0
    }
}

/// What a degraded link does to the traffic sent over it: hold each packet `delay` ± `jitter`,
/// lose `loss` of them, and send no faster than `rate`.
///
/// Always valid: `delay` and `jitter` are at most [`MAX_DELAY`], and at least one of the four
/// does something. `jitter` may exceed `delay`, as netem allows; a sampled delay below zero
/// means none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Degrade {
    delay: Duration,
    jitter: Duration,
    loss: Percent,
    rate: Option<Rate>,
}

impl Degrade {
    /// Checks the delays and that the link is degraded at all.
    pub fn new(
        delay: Duration,
        jitter: Duration,
        loss: Percent,
        rate: Option<Rate>,
    ) -> Result<Degrade, String> {
        check_delay("delay", delay)?;
        check_delay("jitter", jitter)?;
        if delay.is_zero() && jitter.is_zero() && loss.is_zero() && rate.is_none() {
            return Err(NOTHING.to_string());
        }
        Ok(Degrade {
            delay,
            jitter,
            loss,
            rate,
        })
    }

    /// From the control protocol's fields (see [`crate::control::Fault::Degrade`]): delays in
    /// milliseconds, loss in percent, a rate as text. NaN, infinite, negative or overlong
    /// values are errors naming the field.
    pub fn from_wire(
        delay_ms: f64,
        jitter_ms: f64,
        loss_pct: f64,
        rate: Option<&str>,
    ) -> Result<Degrade, String> {
        let delay = millis("delay_ms", delay_ms)?;
        let jitter = millis("jitter_ms", jitter_ms)?;
        let loss = Percent::new(loss_pct).map_err(|e| format!("`loss_pct`: {e}"))?;
        let rate = rate
            .map(Rate::parse)
            .transpose()
            .map_err(|e| format!("`rate`: {e}"))?;
        Degrade::new(delay, jitter, loss, rate)
    }

    pub fn delay(&self) -> Duration {
        self.delay
    }

    pub fn jitter(&self) -> Duration {
        self.jitter
    }

    pub fn loss(&self) -> Percent {
        self.loss
    }

    pub fn rate(&self) -> Option<Rate> {
        self.rate
    }
}

pub(crate) const NOTHING: &str = "degrade needs at least one of delay, jitter, loss or rate";

/// `delay` or `jitter` at most [`MAX_DELAY`].
pub(crate) fn check_delay(what: &str, d: Duration) -> Result<(), String> {
    if d > MAX_DELAY {
        Err(format!(
            "{what} is at most 60s, found {}",
            format_duration(d)
        ))
    } else {
        Ok(())
    }
}

fn millis(field: &str, ms: f64) -> Result<Duration, String> {
    let max_ms = MAX_DELAY.as_secs_f64() * 1000.0;
    if !(0.0..=max_ms).contains(&ms) {
        return Err(format!(
            "`{field}` must be a number of milliseconds from 0 to {max_ms}, found {}",
            number(ms)
        ));
    }
    Duration::try_from_secs_f64(ms / 1000.0)
        .map_err(|e| format!("`{field}` is not a duration ({e}), found {}", number(ms)))
}

/// A number as a person reads it in an error: `1e308` rather than its 309 digits.
fn number(x: f64) -> String {
    if x.is_finite() && x.abs() >= 1e9 {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

impl fmt::Display for Degrade {
    /// `delay 50ms, jitter 5ms, loss 1.5%, rate 1000000bit`, leaving out what is not set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.delay.is_zero() {
            parts.push(format!("delay {}", format_duration(self.delay)));
        }
        if !self.jitter.is_zero() {
            parts.push(format!("jitter {}", format_duration(self.jitter)));
        }
        if !self.loss.is_zero() {
            parts.push(format!("loss {}", self.loss));
        }
        if let Some(r) = self.rate {
            parts.push(format!("rate {r}"));
        }
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::tests::odd_strings;

    #[test]
    fn rates_parse_in_every_netem_unit() {
        let bits = |s: &str| {
            Rate::parse(s)
                .unwrap_or_else(|e| panic!("{s}: {e}"))
                .bits_per_second()
        };
        assert_eq!(bits("1mbit"), 1_000_000);
        assert_eq!(bits("500kbit"), 500_000);
        assert_eq!(bits("10mbps"), 80_000_000);
        assert_eq!(bits("2000bps"), 16_000);
        assert_eq!(bits("1gbit"), 1_000_000_000);
        assert_eq!(bits("800bit"), 800);
        assert_eq!(bits("1.5mbit"), 1_500_000);
        assert_eq!(bits("0.1mbit"), 100_000);
        assert_eq!(bits(" 1MBit "), 1_000_000);
        assert_eq!(bits("1KBPS"), 8_000);
        assert_eq!(bits("1kibit"), 1024);
        assert_eq!(bits("1mibps"), 8 * 1024 * 1024);
        assert_eq!(bits("100gbit"), Rate::MAX_BITS_PER_SECOND);
        assert_eq!(bits("8bit"), 8);
        let r = Rate::parse("1mbit").unwrap();
        assert_eq!(r.bytes_per_second(), 125_000);
        assert_eq!(Rate::parse("12bit").unwrap().bytes_per_second(), 1);
    }

    #[test]
    fn a_rate_displays_as_netem_reads_it_and_round_trips() {
        for s in ["1mbit", "1.5mbit", "10mbps", "800bit", "3kibps", "100gbit"] {
            let r = Rate::parse(s).unwrap();
            assert_eq!(r.to_string(), format!("{}bit", r.bits_per_second()));
            assert_eq!(Rate::parse(&r.to_string()).unwrap(), r);
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{r}\""));
            assert_eq!(serde_json::from_str::<Rate>(&json).unwrap(), r);
        }
        assert!(serde_json::from_str::<Rate>("\"fast\"").is_err());
    }

    #[test]
    fn unparseable_zero_and_absurd_rates_say_what_was_expected() {
        let errors: Vec<String> = [
            "fast", "", "1000", "5 mph", "-1mbit", "0mbit", "4bit", "101gbit", "1tbit",
        ]
        .iter()
        .map(|s| format!("{s:?}: {}", Rate::parse(s).unwrap_err()))
        .collect();
        insta::assert_snapshot!(errors.join("\n"));
        assert!(Rate::from_bits_per_second(0).is_err());
        assert!(Rate::from_bits_per_second(7).is_err());
        assert!(Rate::from_bits_per_second(Rate::MAX_BITS_PER_SECOND + 1).is_err());
        assert_eq!(Rate::from_bits_per_second(8).unwrap().bytes_per_second(), 1);
    }

    #[test]
    fn percentages_are_finite_and_from_0_to_100() {
        assert_eq!(Percent::new(0.0).unwrap(), Percent::ZERO);
        assert_eq!(Percent::new(-0.0).unwrap().to_string(), "0%");
        assert_eq!(Percent::new(100.0).unwrap().fraction(), 1.0);
        assert_eq!(Percent::new(1.5).unwrap().to_string(), "1.5%");
        for bad in [
            -1.0,
            100.000_001,
            150.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e308,
        ] {
            assert!(Percent::new(bad).is_err(), "{bad}");
        }
        insta::assert_snapshot!(Percent::new(150.0).unwrap_err(), @"expected a percentage from 0 to 100, e.g. 1.5; found 150");
        assert!(serde_json::from_str::<Percent>("101").is_err());
        assert_eq!(serde_json::from_str::<Percent>("2").unwrap().get(), 2.0);
    }

    #[test]
    fn a_degrade_must_do_something_and_hold_packets_at_most_a_minute() {
        let ms = Duration::from_millis;
        assert!(Degrade::new(ms(50), ms(0), Percent::ZERO, None).is_ok());
        // Jitter alone, and jitter above delay, are what netem accepts.
        assert!(Degrade::new(ms(0), ms(5), Percent::ZERO, None).is_ok());
        assert!(Degrade::new(ms(5), ms(50), Percent::ZERO, None).is_ok());
        assert!(Degrade::new(ms(0), ms(0), Percent::new(1.0).unwrap(), None).is_ok());
        assert!(Degrade::new(ms(0), ms(0), Percent::ZERO, Rate::parse("1mbit").ok()).is_ok());
        assert!(Degrade::new(MAX_DELAY, MAX_DELAY, Percent::ZERO, None).is_ok());
        assert_eq!(
            Degrade::new(ms(0), ms(0), Percent::ZERO, None).unwrap_err(),
            "degrade needs at least one of delay, jitter, loss or rate"
        );
        assert_eq!(
            Degrade::new(ms(60_001), ms(0), Percent::ZERO, None).unwrap_err(),
            "delay is at most 60s, found 1m00s"
        );
        assert!(Degrade::new(ms(1), Duration::MAX, Percent::ZERO, None).is_err());
    }

    #[test]
    fn wire_values_that_cannot_be_applied_are_errors_not_panics() {
        let d = Degrade::from_wire(50.0, 5.0, 1.5, Some("1mbit")).unwrap();
        assert_eq!(d.delay(), Duration::from_millis(50));
        assert_eq!(d.jitter(), Duration::from_millis(5));
        assert_eq!(d.loss().get(), 1.5);
        assert_eq!(d.rate().unwrap().bits_per_second(), 1_000_000);
        assert_eq!(
            d.to_string(),
            "delay 50ms, jitter 5ms, loss 1.5%, rate 1000000bit"
        );
        let errors: Vec<String> = [
            (-5.0, 0.0, 0.0, None),
            (f64::NAN, 0.0, 0.0, None),
            (1e308, 0.0, 0.0, None),
            (f64::INFINITY, 0.0, 0.0, None),
            (0.0, -0.5, 0.0, None),
            (0.0, 0.0, 150.0, None),
            (0.0, 0.0, f64::NAN, None),
            (0.0, 0.0, 0.0, Some("fast")),
            (0.0, 0.0, 0.0, None),
        ]
        .into_iter()
        .map(|(d, j, l, r)| Degrade::from_wire(d, j, l, r).unwrap_err())
        .collect();
        insta::assert_snapshot!(errors.join("\n"));
    }

    #[test]
    fn no_input_makes_the_fault_parsers_panic() {
        for s in odd_strings(0xfa17, 20_000) {
            if let Ok(r) = Rate::parse(&s) {
                assert!(
                    (8..=Rate::MAX_BITS_PER_SECOND).contains(&r.bits_per_second()),
                    "{s:?}"
                );
                assert_eq!(Rate::parse(&r.to_string()), Ok(r));
            }
        }
        let floats = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            60_000.0,
            60_000.1,
            1e308,
            -1e308,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            f64::EPSILON,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            100.0,
        ];
        for &a in &floats {
            for &b in &floats {
                for &c in &floats {
                    if let Ok(d) = Degrade::from_wire(a, b, c, None) {
                        assert!(d.delay() <= MAX_DELAY && d.jitter() <= MAX_DELAY);
                        assert!((0.0..=100.0).contains(&d.loss().get()));
                    }
                }
            }
        }
    }
}
