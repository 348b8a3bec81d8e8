//! Warnings returned to the API client (which hands them to whoever created the pod) and written
//! to the admission log line. Every one starts with the webhook's name, added here once.

use std::fmt;
use std::ops::Deref;

/// How every warning starts, so a user or admin can tell whose it is.
pub const PREFIX: &str = "xnat-webhook";

/// The warnings of one review, in the order they arose.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Warnings(Vec<String>);

impl Warnings {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `xnat-webhook: {message}`.
    pub fn push(&mut self, message: impl fmt::Display) {
        self.0.push(format!("{PREFIX}: {message}"));
    }

    /// Adds `xnat-webhook (audit mode): {message}`.
    pub fn push_audit(&mut self, message: impl fmt::Display) {
        self.0.push(format!("{PREFIX} (audit mode): {message}"));
    }

    pub fn into_vec(self) -> Vec<String> {
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
