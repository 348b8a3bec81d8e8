//! Warnings returned to the API client (which hands them to whoever created the pod) and written
//! to the admission log line. Every one starts with the webhook's name, added here once.
//!
//! The API server relays warnings as `Warning` headers (`filters/warning.go`): at most 4,096
//! runes of them per request, from every webhook together — past that it cuts each to 256 runes
//! and drops the rest without a word — and it drops outright a warning with a control character
//! (`net.NewWarningHeader`). So the answer keeps its warnings within [`MAX_ANSWER_CHARS`] and says
//! how many it left out; the log line keeps them all.

use std::fmt;
use std::ops::Deref;

/// How every warning starts, so a user or admin can tell whose it is.
pub const PREFIX: &str = "xnat-webhook";

/// Most warnings one review keeps, and most characters of one: a launch context can hold
/// thousands of bad entries, and each answer and log line stays readable and bounded.
pub const MAX_WARNINGS: usize = 32;
pub const MAX_WARNING_CHARS: usize = 512;

/// Most characters of warnings in one answer: the API server's 4,096, less room for other
/// webhooks' and for the line that counts what was left out.
pub const MAX_ANSWER_CHARS: usize = 3072;

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

    /// Puts `xnat-webhook (audit mode): {message}` first: the summary of audit mode is what the
    /// answer must keep when it cannot keep everything.
    pub fn lead_with_audit(&mut self, message: impl fmt::Display) {
        if self.0.len() >= MAX_WARNINGS {
            self.0.pop();
            self.1 += 1;
        }
        self.add(format!("{PREFIX} (audit mode): {message}"));
        if let Some(last) = self.0.pop() {
            self.0.insert(0, last);
        }
    }

    /// Adds `other`'s warnings after these, as if pushed here (those it left out still count).
    pub fn append(&mut self, other: &Warnings) {
        for text in &other.0 {
            self.add(text.clone());
        }
        self.1 += other.1;
    }

    fn add(&mut self, mut text: String) {
        if self.0.len() >= MAX_WARNINGS {
            self.1 += 1;
            return;
        }
        // A control character (a newline from an XNAT message) would make the API server drop
        // the whole warning.
        if text.chars().any(char::is_control) {
            text = text
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
        }
        if let Some((cut, _)) = text.char_indices().nth(MAX_WARNING_CHARS) {
            text.truncate(cut);
            text.push('…');
        }
        self.0.push(text);
    }

    /// The warnings for the answer: in order, as many as fit [`MAX_ANSWER_CHARS`], and a last
    /// one counting those left out (past it or past [`MAX_WARNINGS`]).
    pub fn into_vec(mut self) -> Vec<String> {
        /// Room kept for the counting line.
        const SUMMARY_CHARS: usize = 100;
        let mut total = 0;
        let fits = self
            .0
            .iter()
            .take_while(|w| {
                total += w.chars().count();
                total <= MAX_ANSWER_CHARS - SUMMARY_CHARS
            })
            .count();
        let left_out = self.1 + (self.0.len() - fits);
        self.0.truncate(fits);
        if left_out > 0 {
            self.0.push(format!(
                "{PREFIX}: {left_out} more warnings left out here; the pod's Event and the \
                 webhook's log say more"
            ));
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
        assert_eq!(w.len(), MAX_WARNINGS);
        assert!(w.iter().all(|w| w.chars().count() <= MAX_WARNING_CHARS + 1));
        let v = w.into_vec();
        // What the API server relays whole: 4,096 characters in all.
        let total: usize = v.iter().map(|w| w.chars().count()).sum();
        assert!(total <= MAX_ANSWER_CHARS, "{total}");
        assert_eq!(v.len(), 6);
        assert_eq!(
            v[5],
            "xnat-webhook: 995 more warnings left out here; the pod's Event and the webhook's \
             log say more"
        );
    }

    /// `net.NewWarningHeader` refuses text with a control character: the API server would drop
    /// the whole warning.
    #[test]
    fn control_characters_never_reach_the_api_server() {
        let mut w = Warnings::new();
        w.push("XNAT said:\nUnable to find\tproject");
        assert_eq!(
            w.into_vec(),
            ["xnat-webhook: XNAT said: Unable to find project"]
        );
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

    /// Audit mode's summary is kept first, whatever else was left out.
    #[test]
    fn the_audit_summary_leads() {
        let mut w = Warnings::new();
        for i in 0..40 {
            w.push(format_args!("left out {i}: {}", "x".repeat(300)));
        }
        w.lead_with_audit("would mount 2 project(s)");
        let v = w.into_vec();
        assert_eq!(v[0], "xnat-webhook (audit mode): would mount 2 project(s)");
        assert!(v.last().unwrap().contains("more warnings left out"));
    }
}
