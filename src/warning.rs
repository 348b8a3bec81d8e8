//! Warnings returned to the API client (which hands them to whoever created the pod) and written
//! to the admission log line. Every one starts with the webhook's name, added here once.

use std::fmt;
use std::ops::Deref;

/// How every warning starts, so a user or admin can tell whose it is.
pub const PREFIX: &str = "xnat-webhook";

/// Most warnings one review keeps, and most characters of one: a launch context can hold
/// thousands of bad entries, and each answer and log line stays readable and bounded.
pub const MAX_WARNINGS: usize = 32;
pub const MAX_WARNING_CHARS: usize = 512;

/// The warnings of one review, in the order they arose.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Warnings(Vec<String>, usize);

impl Warnings {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `xnat-webhook: {message}`.
    pub fn push(&mut self, message: impl fmt::Display) {
        self.add(format!("{PREFIX}: {message}"));
    }

    /// Adds `xnat-webhook (audit mode): {message}`.
    pub fn push_audit(&mut self, message: impl fmt::Display) {
        self.add(format!("{PREFIX} (audit mode): {message}"));
    }

    fn add(&mut self, mut text: String) {
        if self.0.len() >= MAX_WARNINGS {
            self.1 += 1;
            return;
        }
        if let Some((cut, _)) = text.char_indices().nth(MAX_WARNING_CHARS) {
            text.truncate(cut);
            text.push('…');
        }
        self.0.push(text);
    }

    /// The warnings, and a last one counting those left out past [`MAX_WARNINGS`].
    pub fn into_vec(mut self) -> Vec<String> {
        if self.1 > 0 {
            self.0
                .push(format!("{PREFIX}: {} more warnings left out", self.1));
        }
        self.0
    }
}

impl Deref for Warnings {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_bounded_in_number_and_length() {
        let mut w = Warnings::new();
        for i in 0..1000 {
            w.push(format_args!("{i} {}", "x".repeat(2000)));
        }
        let v = w.into_vec();
        assert_eq!(v.len(), MAX_WARNINGS + 1);
        assert!(v.iter().all(|w| w.chars().count() <= MAX_WARNING_CHARS + 1));
        assert_eq!(v[MAX_WARNINGS], "xnat-webhook: 968 more warnings left out");
    }

    #[test]
    fn the_prefix_is_added_once() {
        let mut w = Warnings::new();
        w.push("XNAT could not be asked");
        w.push_audit(format_args!("would mount {} project(s)", 2));
        assert_eq!(
            w.into_vec(),
            [
                "xnat-webhook: XNAT could not be asked",
                "xnat-webhook (audit mode): would mount 2 project(s)"
            ]
        );
    }
}
