//! Human durations in specs: `"250ms"`, `"10s"`, `"1.5s"`, `"2m"`.

use std::time::Duration;

/// Parses `"250ms"`, `"10s"`, `"1.5s"`, `"2m"` or `"1h"`; a bare number is refused because its
/// unit would be a guess.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let expected = "expected a duration such as \"500ms\", \"10s\" or \"2m\"";
    if number.is_empty() {
        return Err(format!("`{text}` is not a duration; {expected}"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; {expected}"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "" => return Err(format!("`{text}` has no unit; {expected}")),
        other => return Err(format!("unknown unit `{other}` in `{text}`; {expected}")),
    };
    Ok(Duration::from_secs_f64(seconds))
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
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(
            parse_duration("3 weeks")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_millis(1250)), "1.25s");
        assert_eq!(format_duration(Duration::from_secs(125)), "2m05s");
    }
}
