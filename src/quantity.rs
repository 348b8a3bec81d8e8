//! Kubernetes resource quantities (`500m`, `1Gi`, `1073741824`, `1e3`), parsed only far enough to
//! compare them, so that a filled-in value never makes a pod invalid (request above limit).

use std::fmt;

/// A quantity as written, with its numeric value for comparisons.
#[derive(Clone, PartialEq)]
pub struct Quantity {
    text: String,
    value: f64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("`{0}` is not a non-negative Kubernetes quantity (e.g. 500m, 2, 1Gi, 512Mi)")]
pub struct QuantityError(pub String);

impl Quantity {
    /// Parses a resource amount; negative amounts are refused (no pod may ask for them).
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let value = value_of(text)
            .filter(|v| *v >= 0.0)
            .ok_or_else(|| QuantityError(text.to_owned()))?;
        Ok(Self {
            text: text.to_owned(),
            value,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value in base units (cores, bytes). `f64` is exact far beyond any real pod's size.
    pub fn value(&self) -> f64 {
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

/// The numeric value of a quantity string, or `None` when it is not one.
///
/// Grammar (from apimachinery's `resource.Quantity`): an optional sign, a decimal number, then
/// either a binary suffix (`Ki`…`Ei`), a decimal suffix (`n u m k M G T P E`, or none) or a
/// decimal exponent (`e3`, `E-2`).
pub fn value_of(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let digits = number.trim_start_matches(['+', '-']);
    if digits.is_empty()
        || number.len() - digits.len() > 1
        || digits.matches('.').count() > 1
        || digits == "."
    {
        return None;
    }
    let base: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => {
            let e = &exp[1..];
            let unsigned = e.trim_start_matches(['+', '-']);
            if unsigned.is_empty()
                || e.len() - unsigned.len() > 1
                || !unsigned.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            10f64.powi(e.parse::<i32>().ok()?)
        }
        _ => return None,
    };
    let value = base * multiplier;
    value.is_finite().then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_the_api_server_hands_back() {
        assert_eq!(value_of("500m"), Some(0.5));
        assert_eq!(value_of("2"), Some(2.0));
        assert_eq!(value_of("1073741824"), Some(1073741824.0));
        assert_eq!(value_of("1Gi"), Some(1073741824.0));
        assert_eq!(value_of("8Gi"), Some(8.0 * 1073741824.0));
        assert_eq!(value_of("512Mi"), Some(512.0 * 1048576.0));
        assert_eq!(value_of("1G"), Some(1e9));
        assert_eq!(value_of("1e3"), Some(1000.0));
        assert_eq!(value_of("1.5"), Some(1.5));
        assert_eq!(value_of("0.5"), Some(0.5));
    }

    #[test]
    fn rejects_what_is_not_a_quantity() {
        for bad in [
            "", "Gi", "1GB", "one", "1..2", "--1", "1e", "1e+", "1 Gi", ".", "1Gi2",
        ] {
            assert_eq!(value_of(bad), None, "{bad:?} should be rejected");
        }
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
    }
}
