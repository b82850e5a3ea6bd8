//! Human-readable ttls: parsing `"1h30m"` and formatting remaining seconds.

use std::fmt::Write as _;

use crate::{Error, ErrorKind, Result, Ttl};

/// Units in the order they must appear, with their length in seconds.
const UNITS: [(char, u64); 5] = [
    ('w', 604_800),
    ('d', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

/// Parses a ttl written as whole seconds (`"90"`) or as `<int><unit>` groups (`"15m"`, `"2d"`,
/// `"1h30m"`) with units `w`, `d`, `h`, `m` and `s`.
///
/// Rules, chosen so that every accepted string has one obvious meaning:
/// - surrounding whitespace is ignored; nothing else may appear between or inside groups;
/// - only ASCII digits; no sign, fraction, exponent or separator;
/// - units are lowercase, each appears at most once and in descending order (`"1h30m"`, not
///   `"30m1h"` or `"1h1h"`);
/// - a group may be zero (`"0h5m"`), but the total must lie within the ttl bounds, 1 to 31,536,000.
///
/// ```
/// use psm_core::util::parse_ttl_string;
///
/// assert_eq!(parse_ttl_string("90")?.as_secs(), 90);
/// assert_eq!(parse_ttl_string("15m")?.as_secs(), 900);
/// assert_eq!(parse_ttl_string("1h30m")?.as_secs(), 5400);
/// assert_eq!(parse_ttl_string(" 2d ")?.as_secs(), 172_800);
/// assert!(parse_ttl_string("1.5h").is_err());
/// # Ok::<(), psm_core::Error>(())
/// ```
///
/// # Errors
/// [`ErrorKind::Ttl`] for anything else, including a total of zero or above one year.
pub fn parse_ttl_string(s: &str) -> Result<Ttl> {
    let s = s.trim();
    if s.is_empty() {
        return Err(Error::new(ErrorKind::Ttl, "ttl string is empty"));
    }
    let bytes = s.as_bytes();
    let mut total: u64 = 0;
    let mut pos = 0;
    // Index into UNITS of the next unit allowed, which enforces descending order without repeats.
    let mut next_unit = 0;
    while pos < bytes.len() {
        let digits_start = pos;
        let mut value: u64 = 0;
        while let Some(d) = bytes.get(pos).filter(|b| b.is_ascii_digit()) {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .ok_or_else(too_large)?;
            pos += 1;
        }
        if pos == digits_start {
            return Err(syntax("ttl group must start with a number", pos));
        }
        let multiplier = match bytes.get(pos) {
            // A bare number is seconds, but only when it is the whole string.
            None if digits_start == 0 => 1,
            None => return Err(syntax("ttl group is missing its unit", pos)),
            Some(&unit) => {
                let Some(offset) = UNITS[next_unit..]
                    .iter()
                    .position(|(u, _)| unit == *u as u8)
                else {
                    let message = if UNITS.iter().any(|(u, _)| unit == *u as u8) {
                        "ttl units must appear once each, largest first"
                    } else {
                        "ttl unit must be one of w, d, h, m, s"
                    };
                    return Err(syntax(message, pos));
                };
                next_unit += offset + 1;
                pos += 1;
                UNITS[next_unit - 1].1
            }
        };
        total = value
            .checked_mul(multiplier)
            .and_then(|v| v.checked_add(total))
            .ok_or_else(too_large)?;
    }
    Ttl::from_secs(total)
}

/// Formats remaining seconds from the largest unit down to seconds (`d`, `h`, `m`, `s`), leaving out
/// zero components; zero is `"expired"`.
///
/// ```
/// use psm_core::util::format_ttl_remaining;
///
/// assert_eq!(format_ttl_remaining(3661), "1h 1m 1s");
/// assert_eq!(format_ttl_remaining(0), "expired");
/// assert_eq!(format_ttl_remaining(59), "59s");
/// assert_eq!(format_ttl_remaining(3600), "1h");
/// assert_eq!(format_ttl_remaining(86_401), "1d 1s");
/// assert_eq!(format_ttl_remaining(93_784), "1d 2h 3m 4s");
/// ```
pub fn format_ttl_remaining(secs: u64) -> String {
    if secs == 0 {
        return "expired".to_owned();
    }
    let mut out = String::new();
    let mut rest = secs;
    // Weeks are left out on purpose: "9d" reads more easily than "1w 2d".
    for (unit, size) in &UNITS[1..] {
        let n = rest / size;
        rest %= size;
        if n > 0 {
            if !out.is_empty() {
                out.push(' ');
            }
            // Writing into a String cannot fail.
            let _ = write!(out, "{n}{unit}");
        }
    }
    out
}

fn syntax(message: &'static str, position: usize) -> Error {
    Error::new(ErrorKind::Ttl, message).with_detail("position", position)
}

fn too_large() -> Error {
    Error::new(ErrorKind::Ttl, "ttl must be between 1 and 31536000 seconds")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::MAX_TTL_SECS;

    fn secs(s: &str) -> u64 {
        parse_ttl_string(s).unwrap().as_secs()
    }

    #[test]
    fn accepts_seed_and_rules_examples() {
        assert_eq!(secs("1h"), 3600);
        assert_eq!(secs("90"), 90);
        assert_eq!(secs("15m"), 900);
        assert_eq!(secs("1h30m"), 5400);
        assert_eq!(secs("2d"), 172_800);
        assert_eq!(secs("1w"), 604_800);
        assert_eq!(secs("1w1d1h1m1s"), 694_861);
        assert_eq!(secs("0h5m"), 300);
        assert_eq!(secs("007s"), 7);
        assert_eq!(secs("\t30s\n"), 30);
        assert_eq!(secs("31536000"), MAX_TTL_SECS);
        assert_eq!(secs("365d"), MAX_TTL_SECS);
    }

    #[test]
    fn rejects_everything_else_with_kind_ttl() {
        let long_digits = "9".repeat(10_000);
        let bad = [
            "",
            " ",
            "0",
            "0s",
            "0h0m",
            "-5",
            "+5",
            "1.5h",
            "1e3",
            "1 h",
            "1h 30m",
            "h",
            "1x",
            "1H",
            "30m1h",
            "1h1h",
            "1s1m",
            "1hm",
            "1h30",
            "31536001",
            "366d",
            "53w",
            "18446744073709551616",
            "18446744073709551615w",
            "１２",
            "1h-",
            &long_digits,
        ];
        for s in bad {
            assert_eq!(
                parse_ttl_string(s).unwrap_err().kind(),
                ErrorKind::Ttl,
                "{s:?}"
            );
        }
    }

    #[test]
    fn formats_rules_examples() {
        assert_eq!(format_ttl_remaining(3661), "1h 1m 1s");
        assert_eq!(format_ttl_remaining(0), "expired");
        assert_eq!(format_ttl_remaining(1), "1s");
        assert_eq!(format_ttl_remaining(60), "1m");
        assert_eq!(format_ttl_remaining(604_800), "7d");
        assert_eq!(format_ttl_remaining(u64::MAX), "213503982334601d 7h 15s");
    }

    /// The compact form `1d2h3m4s` of `n` seconds, without zero groups.
    fn compact(n: u64) -> String {
        format_ttl_remaining(n).replace(' ', "")
    }

    proptest! {
        #[test]
        fn never_panics(s in any::<String>()) {
            if let Err(e) = parse_ttl_string(&s) {
                prop_assert_eq!(e.kind(), ErrorKind::Ttl);
            }
        }

        #[test]
        fn never_panics_on_ttl_alphabet(s in "[0-9smhdw+. -]{0,30}") {
            match parse_ttl_string(&s) {
                Ok(t) => prop_assert!((1..=MAX_TTL_SECS).contains(&t.as_secs())),
                Err(e) => prop_assert_eq!(e.kind(), ErrorKind::Ttl),
            }
        }

        #[test]
        fn bare_seconds_round_trip(n in 1..=MAX_TTL_SECS) {
            prop_assert_eq!(secs(&n.to_string()), n);
        }

        #[test]
        fn unit_strings_round_trip(n in 1..=MAX_TTL_SECS) {
            prop_assert_eq!(secs(&compact(n)), n);
        }

        #[test]
        fn arbitrary_groups_sum(w in 0u64..=52, d in 0u64..=6, h in 0u64..=23, m in 0u64..=59, s in 0u64..=59) {
            let total = w * 604_800 + d * 86_400 + h * 3_600 + m * 60 + s;
            let text = format!("{}w{}d{}h{}m{}s", w, d, h, m, s);
            match parse_ttl_string(&text) {
                Ok(t) => prop_assert_eq!(t.as_secs(), total),
                Err(e) => {
                    prop_assert_eq!(e.kind(), ErrorKind::Ttl);
                    prop_assert!(total == 0 || total > MAX_TTL_SECS);
                }
            }
        }

        #[test]
        fn format_is_nonempty_and_expired_only_for_zero(n in any::<u64>()) {
            let f = format_ttl_remaining(n);
            prop_assert_eq!(f == "expired", n == 0);
            prop_assert!(!f.is_empty());
        }
    }
}
