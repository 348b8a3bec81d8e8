//! Quantiles of what a benchmark measured, one rule for every figure printed.
#![allow(dead_code)] // each bench uses its own subset

/// The value a fraction `q` of `sorted` lies below (nearest rank, the upper one).
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> T {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// The middle value of `values` (the upper one of an even count).
pub fn median<T: PartialOrd + Copy>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    quantile(&values, 0.5)
}
