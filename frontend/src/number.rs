//! Numbers as text with a fixed count of decimals, by integer arithmetic,
//! and text typed as a number.
//!
//! Why not `format!("{:.1}")`: core's float formatting (Grisu with a
//! Dragon4 fallback over big integers) is one of the largest pieces of the
//! wasm module, and every number the app shows has a known precision.
//! Rounds like `format!`: to nearest, ties to even, on the scaled value.

use std::fmt::Write as _;

/// Beyond this magnitude the scaled value leaves `i128`; no reading, rule
/// threshold or chart coordinate comes near it.
const LARGEST: f64 = 1e36;

/// `value` with `decimals` digits after the point: `fixed(23.449, 1)` is
/// `23.4`, `fixed(-3.06, 1)` is `-3.1`, `fixed(7.0, 0)` is `7`.
pub fn fixed(value: f64, decimals: u32) -> String {
    let mut out = String::new();
    push_fixed(&mut out, value, decimals);
    out
}

/// [`fixed`], appended to `out` (no allocation of its own: chart paths are
/// written point by point).
pub fn push_fixed(out: &mut String, value: f64, decimals: u32) {
    if !value.is_finite() {
        out.push_str(if value.is_nan() {
            "NaN"
        } else if value > 0.0 {
            "inf"
        } else {
            "-inf"
        });
        return;
    }
    let scale = 10i128.pow(decimals);
    let scaled = round(value.clamp(-LARGEST, LARGEST), scale as f64);
    let digits = (scaled as i128).unsigned_abs();
    if value.is_sign_negative() {
        out.push('-');
    }
    let scale = scale.unsigned_abs();
    let _ = write!(out, "{}", digits / scale);
    if decimals > 0 {
        let fraction = (digits % scale).to_string();
        out.push('.');
        for _ in fraction.len()..decimals as usize {
            out.push('0');
        }
        out.push_str(&fraction);
    }
}

/// `value × scale` rounded to the nearest integer, ties to even, as if the
/// product were exact: `0.05 × 10` rounds to 1 (0.05 is a hair above it),
/// `1013.25 × 10` to 10132 (a true tie).
fn round(value: f64, scale: f64) -> f64 {
    let product = value * scale;
    if (product - product.trunc()).abs() != 0.5 {
        // Rounding the product cannot have crossed a half: it stops on one.
        return product.round_ties_even();
    }
    // The product landed on a half; what it lost on the way says which side
    // the exact one is on.
    let lost = product_error(value, scale, product);
    if lost == 0.0 {
        product.round_ties_even()
    } else {
        product + 0.5f64.copysign(lost)
    }
}

/// `a × b − product`, exactly (Dekker's two-product with Veltkamp's split),
/// where `product` is `a × b` rounded.
fn product_error(a: f64, b: f64, product: f64) -> f64 {
    fn split(x: f64) -> (f64, f64) {
        let c = 134_217_729.0 * x; // 2^27 + 1
        let high = c - (c - x);
        (high, x - high)
    }
    let ((ah, al), (bh, bl)) = (split(a), split(b));
    ((ah * bh - product) + ah * bl + al * bh) + al * bl
}

/// `value` with as few decimals as it needs, up to six: `25`, `24.5`,
/// `0.125`; what a form field shows for a stored threshold.
pub fn trimmed(value: f64) -> String {
    let mut text = fixed(value, 6);
    if text.contains('.') {
        let kept = text.trim_end_matches('0').trim_end_matches('.').len();
        text.truncate(kept);
    }
    if text == "-0" {
        text.remove(0);
    }
    text
}

/// A decimal number as a user types it (`25`, `-3.5`, `.5`, `1e3`), or
/// `None`. Exact (the nearest `f64`) for up to 15 significant digits and
/// exponents within ±22, which covers anything typed into a form; beyond
/// that within a few units in the last place.
// Why not `str::parse::<f64>`: its algorithm, exact for any input, brings a
// 10 KB table of powers of five into the wasm module.
pub fn parse(text: &str) -> Option<f64> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (digits, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((digits, exponent)) => (digits, exponent.parse::<i32>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let mut mantissa = 0u64;
    let mut scale = exponent;
    for (i, byte) in whole.bytes().chain(fraction.bytes()).enumerate() {
        if !byte.is_ascii_digit() {
            return None;
        }
        let in_fraction = i >= whole.len();
        // Why stop taking digits at 10^18: the mantissa would overflow, and
        // an f64 holds fewer digits anyway.
        if mantissa < 1_000_000_000_000_000_000 {
            mantissa = mantissa * 10 + u64::from(byte - b'0');
            scale = scale.checked_sub(i32::from(in_fraction))?;
        } else if !in_fraction {
            scale = scale.checked_add(1)?;
        }
    }
    // Why one multiplication or division by an exact power of ten: each
    // rounds once, so the result is the nearest f64 while both are exact.
    let power = 10f64.powi(scale.unsigned_abs().min(400) as i32);
    let magnitude = if mantissa == 0 {
        0.0
    } else if scale >= 0 {
        mantissa as f64 * power
    } else {
        mantissa as f64 / power
    };
    Some(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_rounds_to_the_nearest_and_ties_to_even_like_format() {
        for (value, decimals) in [
            (23.449, 1),
            (45.0, 1),
            (1013.25, 1),
            (-3.06, 1),
            (7.0, 0),
            (0.05, 1),
            (0.15, 1),
            (2.5, 0),
            (-2.5, 0),
            (0.125, 2),
            (-0.35, 1),
            (1.25, 2),
            (999.96, 1),
            (-0.04, 1),
            (123_456.789, 2),
            (0.0, 2),
        ] {
            assert_eq!(
                fixed(value, decimals),
                format!("{value:.*}", decimals as usize),
                "{value} to {decimals} decimals"
            );
        }
    }

    #[test]
    fn fixed_names_what_is_not_a_number() {
        assert_eq!(fixed(f64::NAN, 1), "NaN");
        assert_eq!(fixed(f64::INFINITY, 1), "inf");
        assert_eq!(fixed(f64::NEG_INFINITY, 1), "-inf");
    }

    #[test]
    fn push_fixed_appends() {
        let mut path = String::from("M");
        push_fixed(&mut path, 12.34, 1);
        path.push(' ');
        push_fixed(&mut path, 0.0, 1);
        assert_eq!(path, "M12.3 0.0");
    }

    #[test]
    fn trimmed_drops_the_zeros_a_value_does_not_need() {
        assert_eq!(trimmed(25.0), "25");
        assert_eq!(trimmed(24.5), "24.5");
        assert_eq!(trimmed(0.125), "0.125");
        assert_eq!(trimmed(-2.75), "-2.75");
        assert_eq!(trimmed(1013.2), "1013.2");
        assert_eq!(trimmed(-0.0), "0");
        // What the rule form reads back is the value stored.
        for value in [25.0, 24.5, 0.1, 1013.25, -12.3] {
            assert_eq!(trimmed(value).parse::<f64>(), Ok(value));
        }
    }

    #[test]
    fn parse_reads_what_std_reads() {
        for text in [
            "25",
            "24.5",
            "-3.06",
            "+7",
            ".5",
            "5.",
            "0",
            "-0",
            "0.1",
            "0.3",
            "1013.25",
            "1e3",
            "2.5E-3",
            "-1e-7",
            "123456789012345",
            "0.000123",
            "19.",
            "99.99",
            "1e22",
            "1e-22",
            "12345678901234567890123",
        ] {
            assert_eq!(parse(text), text.parse::<f64>().ok(), "{text}");
        }
    }

    #[test]
    fn parse_refuses_what_is_not_a_number() {
        for text in [
            "", "-", ".", "+.", "e5", "1e", "1.2.3", "12a", " 1", "1 ", "--1", "0x10", "inf",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn parse_overflows_to_infinity_and_underflows_to_zero() {
        assert_eq!(parse("1e400"), Some(f64::INFINITY));
        assert_eq!(parse("1e-400"), Some(0.0));
        assert_eq!(parse("0e400"), Some(0.0));
    }
}
