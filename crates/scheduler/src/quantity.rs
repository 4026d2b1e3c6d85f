//! A small parser for Kubernetes resource quantities (`resource.Quantity`).
//!
//! Supports the full upstream grammar: an optional sign, a decimal number
//! (`1`, `1.5`, `.5`), and an optional suffix that is either a binary SI
//! suffix (`Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`), a decimal SI suffix (`n`, `u`,
//! `m`, `k`, `M`, `G`, `T`, `P`, `E`) or a decimal exponent (`e3`, `E-2`).
//!
//! Values are converted to integers the way upstream's `Quantity.Value()` and
//! `Quantity.MilliValue()` do: rounding up (away from zero) and saturating at
//! the `i64` range.

use thiserror::Error;

/// Error returned for strings that are not valid quantities.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid quantity {0:?}")]
pub struct QuantityError(pub String);

/// A parsed quantity: `mantissa * 2^bin_exp * 10^dec_exp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedQuantity {
    negative: bool,
    mantissa: u128,
    dec_exp: i32,
    bin_exp: u32,
}

impl ParsedQuantity {
    /// Value scaled to `10^-scale` units, rounded up (away from zero), saturating.
    fn scaled(&self, scale: i32) -> i64 {
        if self.mantissa == 0 {
            return 0;
        }
        let exp = self.dec_exp + scale;
        let mut v: u128 = self.mantissa;
        // Apply the binary multiplier first (saturating).
        for _ in 0..self.bin_exp {
            v = match v.checked_mul(2) {
                Some(x) => x,
                None => return self.saturate(),
            };
        }
        if exp >= 0 {
            for _ in 0..exp {
                v = match v.checked_mul(10) {
                    Some(x) => x,
                    None => return self.saturate(),
                };
            }
        } else {
            let mut div: u128 = 1;
            for _ in 0..(-exp) {
                div = match div.checked_mul(10) {
                    Some(x) => x,
                    // Divisor larger than any mantissa: the value rounds up to 1.
                    None => return if self.negative { -1 } else { 1 },
                };
            }
            v = v.div_ceil(div);
        }
        if v > i64::MAX as u128 {
            return self.saturate();
        }
        let v = v as i64;
        if self.negative {
            -v
        } else {
            v
        }
    }

    fn saturate(&self) -> i64 {
        if self.negative {
            i64::MIN
        } else {
            i64::MAX
        }
    }

    /// Upstream `Quantity.Value()`: whole units, rounded up.
    pub fn value(&self) -> i64 {
        self.scaled(0)
    }

    /// Upstream `Quantity.MilliValue()`: thousandths of a unit, rounded up.
    pub fn milli_value(&self) -> i64 {
        self.scaled(3)
    }
}

/// Parse a quantity string.
pub fn parse_quantity(s: &str) -> Result<ParsedQuantity, QuantityError> {
    let err = || QuantityError(s.to_string());
    let s_trim = s.trim();
    let bytes = s_trim.as_bytes();
    if bytes.is_empty() {
        return Err(err());
    }
    let mut i = 0;
    let mut negative = false;
    if bytes[0] == b'+' || bytes[0] == b'-' {
        negative = bytes[0] == b'-';
        i = 1;
    }
    let mut mantissa: u128 = 0;
    let mut dec_exp: i32 = 0;
    let mut digits = 0usize;
    let mut seen_dot = false;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_digit() {
            digits += 1;
            // Keep at most 36 significant digits; drop the rest (adjusting the exponent).
            if mantissa < 10u128.pow(36) {
                mantissa = mantissa * 10 + u128::from(c - b'0');
                if seen_dot {
                    dec_exp -= 1;
                }
            } else if !seen_dot {
                dec_exp += 1;
            }
        } else if c == b'.' && !seen_dot {
            seen_dot = true;
        } else {
            break;
        }
        i += 1;
    }
    if digits == 0 {
        return Err(err());
    }
    let suffix = &s_trim[i..];
    let mut bin_exp = 0u32;
    match suffix {
        "" => {}
        "Ki" => bin_exp = 10,
        "Mi" => bin_exp = 20,
        "Gi" => bin_exp = 30,
        "Ti" => bin_exp = 40,
        "Pi" => bin_exp = 50,
        "Ei" => bin_exp = 60,
        "n" => dec_exp -= 9,
        "u" => dec_exp -= 6,
        "m" => dec_exp -= 3,
        "k" => dec_exp += 3,
        "M" => dec_exp += 6,
        "G" => dec_exp += 9,
        "T" => dec_exp += 12,
        "P" => dec_exp += 15,
        "E" => dec_exp += 18,
        _ => {
            let rest = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .ok_or_else(err)?;
            let (neg, num) = match rest.as_bytes().first() {
                Some(b'-') => (true, &rest[1..]),
                Some(b'+') => (false, &rest[1..]),
                _ => (false, rest),
            };
            if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            let e: i32 = num.parse().map_err(|_| err())?;
            dec_exp += if neg { -e } else { e };
        }
    }
    Ok(ParsedQuantity {
        negative,
        mantissa,
        dec_exp,
        bin_exp,
    })
}

/// `Quantity.Value()` of a string; invalid quantities count as 0.
pub fn quantity_value(s: &str) -> i64 {
    parse_quantity(s).map(|q| q.value()).unwrap_or(0)
}

/// `Quantity.MilliValue()` of a string; invalid quantities count as 0.
pub fn quantity_milli_value(s: &str) -> i64 {
    parse_quantity(s).map(|q| q.milli_value()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milli_values() {
        for (s, want) in [
            ("100m", 100),
            ("1", 1000),
            ("1.5", 1500),
            ("0.1", 100),
            (".5", 500),
            ("2", 2000),
            ("1e3", 1_000_000),
            ("1k", 1_000_000),
            ("250000n", 1),
            ("1u", 1),
            ("0", 0),
            ("-1", -1000),
            ("+2", 2000),
        ] {
            assert_eq!(quantity_milli_value(s), want, "{s}");
        }
    }

    #[test]
    fn values() {
        for (s, want) in [
            ("500Mi", 500 * 1024 * 1024),
            ("1Gi", 1024 * 1024 * 1024),
            ("1Ki", 1024),
            ("2M", 2_000_000),
            ("1k", 1000),
            ("1e3", 1000),
            ("1E3", 1000),
            ("1.5Gi", 1024 * 1024 * 1024 * 3 / 2),
            ("128974848", 128_974_848),
            ("129e6", 129_000_000),
            ("123Mi", 123 * 1024 * 1024),
            ("100m", 1),
            ("1.1", 2),
            ("110", 110),
            ("8Ei", i64::MAX),
            ("1e-3", 1),
        ] {
            assert_eq!(quantity_value(s), want, "{s}");
        }
    }

    #[test]
    fn invalid() {
        for s in ["", "abc", "1Zi", "1e", "1e+", "m", "1.2.3", "--1"] {
            assert!(parse_quantity(s).is_err(), "{s}");
        }
    }
}
