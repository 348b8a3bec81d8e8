//! Kubernetes resource quantities (`500m`, `1Gi`, `1073741824`, `1e3`), read exactly, so that a
//! filled-in value never makes a pod invalid (request above limit) and a value the API server
//! wrote in another notation (`0.7` as `700m`) compares equal to the policy's.
//!
//! Grammar (apimachinery's `resource.Quantity`): an optional sign, a decimal number, then a
//! binary suffix (`Ki`…`Ei`), a decimal suffix (`n u m k M G T P E`, or none) or a decimal
//! exponent (`e3`, `E-2`). Values are kept as `coefficient × 10^exponent` with integer
//! arithmetic only: no float ever decides whether two quantities are equal.

use std::cmp::Ordering;
use std::fmt;

/// An exact value: `±coefficient × 10^exponent`, normalised (no trailing zeros in the
/// coefficient; zero is `0 × 10^0`, never negative), so equal values have equal fields.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Amount {
    negative: bool,
    coefficient: u128,
    exponent: i32,
}

/// At most this many significant digits are kept (10^38 < u128::MAX), so two coefficients
/// aligned for a comparison always fit.
const MAX_DIGITS: usize = 38;

/// Decimal SI suffixes and their powers of ten.
const DECIMAL_SUFFIXES: [(&str, i32); 10] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];

/// Binary suffixes and their powers of 1024.
const BINARY_SUFFIXES: [(&str, u32); 6] = [
    ("Ki", 1),
    ("Mi", 2),
    ("Gi", 3),
    ("Ti", 4),
    ("Pi", 5),
    ("Ei", 6),
];

impl Amount {
    pub const ZERO: Amount = Amount {
        negative: false,
        coefficient: 0,
        exponent: 0,
    };

    /// `None` when the value needs more than [`MAX_DIGITS`] significant digits.
    fn new(negative: bool, coefficient: u128, exponent: i32) -> Option<Self> {
        if coefficient == 0 {
            return Some(Self::ZERO);
        }
        let (mut c, mut e) = (coefficient, exponent);
        while c % 10 == 0 {
            c /= 10;
            e = e.checked_add(1)?;
        }
        (digits(c) as usize <= MAX_DIGITS).then_some(Self {
            negative,
            coefficient: c,
            exponent: e,
        })
    }

    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// Parses a quantity; `None` when it is not one, or when its value needs more than 38
    /// significant digits (a long number, or a binary suffix on a large one).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .unwrap_or(text.len());
        let (number, suffix) = text.split_at(split);
        let (negative, digits) = match number.as_bytes().first() {
            Some(b'-') => (true, &number[1..]),
            Some(b'+') => (false, &number[1..]),
            _ => (false, number),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (coefficient, trailing_zeros) = read_digits(int, frac)?;
        let mut exponent = i32::try_from(trailing_zeros).ok()? - i32::try_from(frac.len()).ok()?;
        let mut coefficient = coefficient;
        match suffix_power(suffix)? {
            Power::Ten(p) => exponent = exponent.checked_add(p)?,
            Power::Binary(k) => coefficient = coefficient.checked_mul(1u128 << (10 * k))?,
        }
        Self::new(negative, coefficient, exponent)
    }

    /// The value as a whole number, if it is one (bytes, as KubeSpawner writes `MEM_LIMIT`).
    pub fn as_integer(&self) -> Option<u128> {
        if self.negative || self.exponent < 0 {
            return None;
        }
        let shift = u32::try_from(self.exponent).ok()?;
        self.coefficient.checked_mul(10u128.checked_pow(shift)?)
    }

    /// A canonical spelling, the same for equal values: decimal SI (`700m`, `1073741824`, `8k`)
    /// when the value fits a suffix, else a decimal exponent (`5e-12`).
    pub fn canonical(&self) -> String {
        let sign = if self.negative { "-" } else { "" };
        if self.coefficient == 0 {
            return "0".into();
        }
        // The largest suffix whose power is at most the exponent keeps the mantissa an integer.
        let fit = DECIMAL_SUFFIXES
            .iter()
            .rev()
            .find(|(_, p)| *p <= self.exponent)
            .and_then(|(s, p)| {
                let shift = u32::try_from(self.exponent - p).ok()?;
                let mantissa = self.coefficient.checked_mul(10u128.checked_pow(shift)?)?;
                Some(format!("{sign}{mantissa}{s}"))
            });
        fit.unwrap_or_else(|| format!("{sign}{}e{}", self.coefficient, self.exponent))
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        if self.coefficient == 0 || other.coefficient == 0 {
            return self.coefficient.cmp(&other.coefficient);
        }
        // Orders of magnitude first; only values of the same order need aligning, and then the
        // aligned coefficient has no more digits than the other one (at most 38).
        let order = |a: &Self| digits(a.coefficient) as i64 + i64::from(a.exponent);
        match order(self).cmp(&order(other)) {
            Ordering::Equal => {}
            unequal => return unequal,
        }
        let shift = |a: &Self, b: &Self| 10u128.pow((a.exponent - b.exponent) as u32);
        if self.exponent >= other.exponent {
            (self.coefficient * shift(self, other)).cmp(&other.coefficient)
        } else {
            self.coefficient
                .cmp(&(other.coefficient * shift(other, self)))
        }
    }
}

impl Ord for Amount {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for Amount {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

enum Power {
    /// × 10^p
    Ten(i32),
    /// × 1024^k
    Binary(u32),
}

fn suffix_power(suffix: &str) -> Option<Power> {
    if let Some((_, p)) = DECIMAL_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Some(Power::Ten(*p));
    }
    if let Some((_, k)) = BINARY_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Some(Power::Binary(*k));
    }
    let e = suffix.strip_prefix(['e', 'E'])?;
    let unsigned = e.strip_prefix(['+', '-']).unwrap_or(e);
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    e.parse().ok().map(Power::Ten)
}

/// The significant digits of `int.frac` as an integer, and how many trailing zeros were dropped.
fn read_digits(int: &str, frac: &str) -> Option<(u128, usize)> {
    let all = || int.bytes().chain(frac.bytes());
    let total = int.len() + frac.len();
    let leading = all().take_while(|b| *b == b'0').count();
    if leading == total {
        return Some((0, 0));
    }
    let trailing = all().rev().take_while(|b| *b == b'0').count();
    let significant = total - leading - trailing;
    if significant > MAX_DIGITS {
        return None;
    }
    let value = all()
        .skip(leading)
        .take(significant)
        .fold(0u128, |v, b| v * 10 + u128::from(b - b'0'));
    Some((value, trailing))
}

fn digits(mut n: u128) -> u32 {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// A quantity as written, with its exact value for comparisons.
#[derive(Clone, PartialEq)]
pub struct Quantity {
    text: String,
    value: Amount,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("`{0}` is not a non-negative Kubernetes quantity (e.g. 500m, 2, 1Gi, 512Mi)")]
pub struct QuantityError(pub String);

impl Quantity {
    /// Parses a resource amount; negative amounts are refused (no pod may ask for them).
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let value = Amount::parse(text)
            .filter(|v| !v.is_negative())
            .ok_or_else(|| QuantityError(text.to_owned()))?;
        Ok(Self {
            text: text.to_owned(),
            value,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The exact value, for comparisons.
    pub fn value(&self) -> Amount {
        self.value
    }
}

impl fmt::Debug for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Amount {
        Amount::parse(s).unwrap_or_else(|| panic!("{s:?} should parse"))
    }

    #[test]
    fn parses_the_forms_the_api_server_hands_back() {
        assert_eq!(v("500m").canonical(), "500m");
        assert_eq!(v("1073741824"), v("1Gi"));
        assert_eq!(v("8Gi").canonical(), "8589934592");
        assert_eq!(v("512Mi"), v("536870912"));
        assert_eq!(v("1G"), v("1000M"));
        assert_eq!(v("1e3"), v("1k"));
        assert_eq!(v("1.5"), v("1500m"));
        assert_eq!(v("0.5"), v(".5"));
        assert_eq!(v("5."), v("5"));
        assert_eq!(v("1E3"), v("1k"));
        assert_eq!(v("1E"), v("1000P"));
    }

    #[test]
    fn equal_values_in_other_notations_are_equal_exactly() {
        assert_eq!(v("0.7"), v("700m"));
        assert_eq!(v("0.1"), v("100m"));
        assert_eq!(v("1.5Gi"), v("1536Mi"));
        assert_eq!(v("0.001"), v("1m"));
        assert_eq!(v("1n"), v("0.000000001"));
        assert_eq!(v("0"), v("-0"));
        assert_eq!(v("00012.3400"), v("12340m"));
        assert!(v("0.7") < v("701m") && v("701m") > v("0.7"));
        assert!(v("1Gi") > v("1G") && v("1Ki") > v("1k"));
        assert!(v("-1") < v("0") && v("-2") < v("-1"));
        assert!(v("1e-12") < v("1n") && v("1n") > v("0"));
    }

    #[test]
    fn rejects_what_is_not_a_quantity() {
        for bad in [
            "", "Gi", "1GB", "one", "1..2", "--1", "1e", "1e+", "1 Gi", ".", "1Gi2", "+-1", "1.2.3",
        ] {
            assert_eq!(Amount::parse(bad), None, "{bad:?} should be rejected");
        }
        assert_eq!(Amount::parse(&"9".repeat(39)), None, "more than 38 digits");
        assert_eq!(Amount::parse("1e99999999999"), None, "exponent overflow");
        assert_eq!(
            Amount::parse(&format!("{}Ei", "9".repeat(30))),
            None,
            "too large"
        );
        assert!(Quantity::parse("lots").is_err());
        assert!(Quantity::parse("-1").is_err());
        assert!(Quantity::parse("-5Gi").is_err());
    }

    #[test]
    fn compares_across_notations() {
        let request = Quantity::parse("1073741824").unwrap();
        let limit = Quantity::parse("1Gi").unwrap();
        assert_eq!(request.value(), limit.value());
        assert!(Quantity::parse("500m").unwrap().value() < Quantity::parse("1").unwrap().value());
        assert!(v("0.7") == v("700m") && v("0.7") != v("0.71"));
    }

    #[test]
    fn canonical_spelling() {
        for (text, canonical) in [
            ("0.7", "700m"),
            ("1e3", "1k"),
            ("1Ki", "1024"),
            ("1.5Gi", "1610612736"),
            ("2000", "2k"),
            ("0", "0"),
            ("-0.25", "-250m"),
            ("5e-12", "5e-12"),
            ("1e21", "1000E"),
            ("1e60", "1e60"),
        ] {
            assert_eq!(v(text).canonical(), canonical, "{text}");
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        fn quantity_text() -> impl Strategy<Value = String> {
            let suffix = prop_oneof![
                prop::sample::select(vec![
                    "", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi",
                    "Ei",
                ])
                .prop_map(str::to_owned),
                (prop::bool::ANY, 0u32..40)
                    .prop_map(|(neg, e)| { format!("e{}{e}", if neg { "-" } else { "" }) }),
            ];
            (
                prop::sample::select(vec!["", "+", "-"]),
                "[0-9]{1,12}",
                prop::option::of("[0-9]{0,6}"),
                suffix,
            )
                .prop_map(|(sign, int, frac, suffix)| match frac {
                    Some(f) => format!("{sign}{int}.{f}{suffix}"),
                    None => format!("{sign}{int}{suffix}"),
                })
        }

        proptest! {
            /// parse → canonical → parse gives the same value, and the canonical spelling of
            /// that is the same string.
            #[test]
            fn parse_canonical_parse_round_trips(text in quantity_text()) {
                let a = Amount::parse(&text).expect("generated quantities parse");
                let canonical = a.canonical();
                let b = Amount::parse(&canonical).expect("canonical spellings parse");
                prop_assert_eq!(a, b, "{} -> {}", text, canonical);
                prop_assert_eq!(b.canonical(), canonical);
            }

            /// A value written with a decimal point equals the same value in milli units, and a
            /// binary suffix equals its bytes.
            #[test]
            fn notations_of_one_value_are_equal(int in 0u64..1_000_000_000, milli in 0u64..1000, k in 0u64..1_000_000) {
                prop_assert_eq!(
                    Amount::parse(&format!("{int}.{milli:03}")),
                    Amount::parse(&format!("{}m", int * 1000 + milli))
                );
                prop_assert_eq!(
                    Amount::parse(&format!("{k}Ki")),
                    Amount::parse(&(k * 1024).to_string())
                );
            }

            /// The order agrees with plain arithmetic where floats are still exact.
            #[test]
            fn order_agrees_with_integers(a in -1_000_000_000i64..1_000_000_000, b in -1_000_000_000i64..1_000_000_000) {
                let (x, y) = (
                    Amount::parse(&format!("{a}m")).unwrap(),
                    Amount::parse(&format!("{b}m")).unwrap(),
                );
                prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            }
        }
    }
}
