//! Byte sizes as people write and read them.
//!
//! Parsing follows docker's go-units: a number (`10`, `1.5`), an optional single space, an
//! optional unit prefix `k`, `m`, `g`, `t` or `p` (any case), an optional `i`, an optional
//! `b`. What the prefix multiplies by depends on the [`Rule`] of the flag. A bare number is
//! bytes; a fraction of a byte is dropped.
//!
//! Printing follows go-units' `HumanSize`: powers of 1000 with docker's unit names (`B`,
//! `kB`, `MB`, `GB`...), a number of significant digits, no space (`4.27MB`).

use std::fmt;

/// How a flag reads unit prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Every prefix is a power of 1024: `64m` and `64MB` are 64 MiB. Docker's `RAMInBytes`:
    /// `--shm-size`, `--memory`, tmpfs `size=`, buildx `--keep-storage`.
    Binary,
    /// A prefix is a power of 1000 (`20MB` is 20,000,000 bytes, as `docker images` counts),
    /// and a power of 1024 when an `i` follows it (`20MiB`).
    Decimal,
}

/// Why a text is not a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Not a number with an optional unit.
    #[error("{text:?} is not a size (a number, optionally followed by k, m, g, t or p)")]
    Malformed {
        /// The text as given.
        text: String,
    },
    /// More bytes than fit in 64 bits.
    #[error("{text:?} is too large a size")]
    TooLarge {
        /// The text as given.
        text: String,
    },
}

/// Parses `text` as a size under `rule`.
pub fn parse(text: &str, rule: Rule) -> Result<u64, SizeError> {
    let malformed = || SizeError::Malformed {
        text: text.to_string(),
    };
    let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let int_len = digits(text);
    if int_len == 0 {
        return Err(malformed());
    }
    let (int_part, mut rest) = text.split_at(int_len);
    let mut fraction = "";
    if let Some(after) = rest.strip_prefix('.') {
        let n = digits(after);
        if n == 0 {
            return Err(malformed());
        }
        fraction = &after[..n];
        rest = &after[n..];
    }
    rest = rest.strip_prefix(' ').unwrap_or(rest);
    let mut chars = rest.chars().peekable();
    let power = match chars.peek().map(char::to_ascii_lowercase) {
        Some(c @ ('k' | 'm' | 'g' | 't' | 'p')) => {
            chars.next();
            "kmgtp".find(c).map_or(0, |i| i as u32 + 1)
        }
        _ => 0,
    };
    let binary_marker = chars.next_if(|c| c.eq_ignore_ascii_case(&'i')).is_some();
    chars.next_if(|c| c.eq_ignore_ascii_case(&'b'));
    if chars.next().is_some() {
        return Err(malformed());
    }
    let base: u64 = match rule {
        Rule::Binary => 1024,
        Rule::Decimal if binary_marker => 1024,
        Rule::Decimal => 1000,
    };
    let too_large = || SizeError::TooLarge {
        text: text.to_string(),
    };
    let multiplier = base.checked_pow(power).ok_or_else(too_large)?;
    let whole: u64 = int_part.parse().map_err(|_| too_large())?;
    let bytes = whole.checked_mul(multiplier).ok_or_else(too_large)?;
    if fraction.is_empty() {
        return Ok(bytes);
    }
    // The fraction of the unit, in bytes (rounded down, as docker truncates).
    let part: f64 = format!("0.{fraction}").parse().map_err(|_| malformed())?;
    bytes
        .checked_add((part * multiplier as f64) as u64)
        .ok_or_else(too_large)
}

/// `size` as `docker system df` and `docker system prune` print it: powers of 1000, four
/// significant digits (`1.5kB`, `20.97MB`, `999B`).
pub fn human(bytes: u64) -> String {
    Human::new(bytes, 4).to_string()
}

/// `size` as `docker images` prints it: powers of 1000, three significant digits (`4.27MB`).
pub fn image(bytes: u64) -> String {
    Human::new(bytes, 3).to_string()
}

/// A limit for messages: `16 MiB`, `64 KiB` when it is a whole number of them, else
/// `N bytes`, so the number shown is exactly the limit.
pub fn limit(bytes: u64) -> String {
    match bytes {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// A size printed with go-units' `HumanSizeWithPrecision`: `%.<precision>g` of the value in
/// the largest unit below it, and the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Human {
    bytes: u64,
    precision: usize,
}

impl Human {
    /// `bytes` with `precision` significant digits (at least 1).
    pub fn new(bytes: u64, precision: usize) -> Human {
        Human {
            bytes,
            precision: precision.max(1),
        }
    }
}

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
        let mut value = self.bytes as f64;
        let mut unit = 0;
        while value >= 1000.0 && unit + 1 < UNITS.len() {
            value /= 1000.0;
            unit += 1;
        }
        write!(f, "{}{}", go_g(value, self.precision), UNITS[unit])
    }
}

/// Go's `%.<precision>g` of a non-negative value: the shortest of fixed and exponent
/// notation at that many significant digits, trailing zeros removed (`1e+03` for 999.9 at
/// three digits, as docker prints it).
fn go_g(value: f64, precision: usize) -> String {
    if value == 0.0 {
        return "0".to_string();
    }
    let sci = format!("{:.*e}", precision - 1, value);
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if exponent < -4 || exponent >= precision as i32 {
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!(
            "{}e{sign}{:02}",
            trim_zeros(mantissa),
            exponent.unsigned_abs()
        );
    }
    let decimals = (precision as i32 - 1 - exponent).max(0) as usize;
    trim_zeros(&format!("{value:.decimals$}")).to_string()
}

fn trim_zeros(number: &str) -> &str {
    if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        number
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_sizes_parse_as_ram_in_bytes() {
        let p = |s: &str| parse(s, Rule::Binary);
        assert_eq!(p("123"), Ok(123));
        assert_eq!(p("64k"), Ok(64 << 10));
        assert_eq!(p("64K"), Ok(64 << 10));
        assert_eq!(p("1m"), Ok(1 << 20));
        assert_eq!(p("1MB"), Ok(1 << 20));
        assert_eq!(p("10GiB"), Ok(10 << 30));
        assert_eq!(p("10 gb"), Ok(10 << 30));
        assert_eq!(p("2t"), Ok(2 << 40));
        assert_eq!(p("1p"), Ok(1 << 50));
        assert_eq!(p("1.5g"), Ok(3 << 29));
        assert_eq!(p("0.5k"), Ok(512));
        assert_eq!(p("10b"), Ok(10));
        assert_eq!(p("10"), Ok(10));
        for bad in [
            "", "K", "-1", "1X", "1.", ".5", "1.2.3", " 1m", "1m ", "1  m", "1mm", "1kib2", "m1",
        ] {
            assert!(
                matches!(p(bad), Err(SizeError::Malformed { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(p("99999999999T"), Err(SizeError::TooLarge { .. })));
        assert!(matches!(
            p("99999999999999999999"),
            Err(SizeError::TooLarge { .. })
        ));
    }

    #[test]
    fn decimal_sizes_count_in_thousands_unless_binary_is_asked() {
        let p = |s: &str| parse(s, Rule::Decimal);
        assert_eq!(p("20MB"), Ok(20_000_000));
        assert_eq!(p("20mb"), Ok(20_000_000));
        assert_eq!(p("1.5GB"), Ok(1_500_000_000));
        assert_eq!(p("300"), Ok(300));
        assert_eq!(p("2k"), Ok(2000));
        assert_eq!(p("20MiB"), Ok(20 << 20));
        assert_eq!(p("1KiB"), Ok(1024));
    }

    #[test]
    fn sizes_print_as_docker_prints_them() {
        // `docker images`: three significant digits.
        assert_eq!(image(0), "0B");
        assert_eq!(image(999), "999B");
        assert_eq!(image(1000), "1kB");
        assert_eq!(image(4_270_000), "4.27MB");
        assert_eq!(image(123_456_789), "123MB");
        assert_eq!(image(1_234), "1.23kB");
        // Go's %g switches to an exponent when rounding reaches the next power of ten.
        assert_eq!(image(999_600), "1e+03kB");
        // `docker system df`: four.
        assert_eq!(human(1536), "1.536kB");
        assert_eq!(human(20 << 20), "20.97MB");
        assert_eq!(human(10), "10B");
        assert_eq!(human(5_000_000_000_000_000_000), "5EB");
        assert_eq!(Human::new(1_500, 1).to_string(), "2kB");
    }

    #[test]
    fn limits_print_exactly() {
        assert_eq!(limit(16 << 20), "16 MiB");
        assert_eq!(limit(64 << 10), "64 KiB");
        assert_eq!(limit(1000), "1000 bytes");
    }
}
