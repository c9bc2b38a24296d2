//! Values from unauthenticated requests, made safe to log and to echo.
//!
//! A header or field of a request that has not been verified is attacker-controlled: raw in
//! a log line, a newline forges another line and an escape sequence reaches the operator's
//! terminal. [`Untrusted`] prints such a value with control characters escaped and cut to
//! [`MAX_CHARS`] characters; use it for every unverified value in a log field or an error
//! body.

use std::fmt;

/// The most characters of an untrusted value shown.
pub const MAX_CHARS: usize = 64;

/// Displays an untrusted string with control characters (`\n`, `\r`, ESC, DEL, …) escaped
/// and at most [`MAX_CHARS`] characters, then `…`.
///
/// ```
/// use handover_transport::log::Untrusted;
///
/// assert_eq!(Untrusted("kid\nFAKE LINE\x1b[2J").to_string(), "kid\\nFAKE LINE\\u{1b}[2J");
/// ```
#[derive(Clone, Copy)]
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, c) in self.0.chars().enumerate() {
            if n == MAX_CHARS {
                return f.write_str("…");
            }
            if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}')
            {
                write!(f, "{}", c.escape_default())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// The escaped, shortened form of `value` (see [`Untrusted`]).
pub fn untrusted(value: &str) -> String {
    Untrusted(value).to_string()
}

/// A message built from untrusted input (a parser's error about a request body), with
/// control characters escaped and at most 512 characters.
pub fn sanitize(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(512));
    for (n, c) in message.chars().enumerate() {
        if n == 512 {
            out.push('…');
            break;
        }
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_long_values_cut() {
        assert_eq!(untrusted("plain kid-1"), "plain kid-1");
        assert_eq!(untrusted("a\r\nb\u{7f}\u{202e}"), "a\\r\\nb\\u{7f}\\u{202e}");
        let long = "x".repeat(200);
        assert_eq!(untrusted(&long).chars().count(), MAX_CHARS + 1);
        assert!(!untrusted("\u{1b}[31m").contains('\u{1b}'));
    }
}
