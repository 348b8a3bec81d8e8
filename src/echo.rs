//! Values the webhook echoes from a request (into logs, warnings and error answers): bounded and
//! escaped, so a request cannot forge log lines (`\n`), hide text (control characters) or make
//! one line huge. Whatever the log format, an echoed value is one short, printable line.

use std::fmt;

/// The most characters of one echoed value.
pub const MAX_ECHO_CHARS: usize = 256;

/// `value`, escaped and cut to [`MAX_ECHO_CHARS`] characters (an ellipsis marks the cut).
pub fn echo(value: &str) -> Echo<'_> {
    Echo(value)
}

/// A request value as it may be shown; see [`echo`].
#[derive(Clone, Copy)]
pub struct Echo<'a>(&'a str);

impl fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.chars().enumerate() {
            if i == MAX_ECHO_CHARS {
                return f.write_str("…");
            }
            if c.is_control() || c == '\\' {
                write!(f, "{}", c.escape_default())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// `text` with the credentials of any `scheme://user:password@host` URL in it replaced, for
/// error texts that are shown without authentication (`/readyz`) or logged.
pub fn without_url_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // A password may hold `/`, `?` or `#` (a URL that then fails to parse): everything up to
        // the last `@` before a quote or whitespace goes, a path's `@` with it.
        let end = tail
            .find(|c: char| matches!(c, '"' | '\'') || c.is_whitespace())
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("<redacted>");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_are_one_printable_bounded_line() {
        assert_eq!(echo("alice").to_string(), "alice");
        assert_eq!(
            echo("a\nINFO forged=1\u{1b}[2J\\").to_string(),
            "a\\nINFO forged=1\\u{1b}[2J\\\\"
        );
        let long = "x".repeat(1000);
        let shown = echo(&long).to_string();
        assert_eq!(shown.chars().count(), MAX_ECHO_CHARS + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(format!("{:?}", echo("é")), "\"é\"");
    }

    #[test]
    fn url_credentials_are_redacted() {
        assert_eq!(
            without_url_credentials(
                "\"http://svc:hunter2@xnat example/x\": invalid, see https://docs/x"
            ),
            "\"http://<redacted>@xnat example/x\": invalid, see https://docs/x"
        );
        assert_eq!(
            without_url_credentials("https://a@b@host/p"),
            "https://<redacted>@host/p"
        );
        assert_eq!(without_url_credentials("no url here"), "no url here");
    }
}
