//! Rendering and splitting transcripts and long messages.
//!
//! Contact centers cap message length (MIAW takes the transcript as first messages of at
//! most 3000 characters). [`split`] cuts text into chunks that fit, at the most readable
//! place, and never inside a character or a grapheme cluster, so emoji with modifiers and
//! letters with combining marks survive intact.

use std::fmt;

use unicode_segmentation::UnicodeSegmentation;

use crate::TranscriptEntry;

/// Why text could not be split.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    /// `max_chars` was zero.
    #[error("max_chars must be at least 1")]
    ZeroLimit,
    /// One grapheme cluster is longer than `max_chars` characters, so no chunk can hold it
    /// without cutting it.
    #[error(
        "a grapheme cluster at byte {offset} has {chars} characters, more than the limit of {max_chars}; \
         raise the limit to at least {chars}"
    )]
    GraphemeTooLong {
        /// Byte offset of the cluster in the input.
        offset: usize,
        /// Characters in the cluster.
        chars: usize,
        /// The limit that was asked for.
        max_chars: usize,
    },
}

/// Splits `text` into chunks of at most `max_chars` characters (Unicode scalar values).
///
/// - Chunks end at a grapheme cluster boundary, never inside one.
/// - A chunk ends after the last line break that fits; failing that, after the last
///   whitespace; failing that, at the last grapheme boundary that fits.
/// - Nothing is dropped or added: the chunks concatenate to exactly `text`. No chunk is
///   empty; empty input gives no chunks.
///
/// ```
/// use handover_core::transcript::split;
///
/// let chunks = split("Bot: Hello\nUser: I need help with my bill", 20).unwrap();
/// assert_eq!(chunks, ["Bot: Hello\n", "User: I need help ", "with my bill"]);
/// assert_eq!(chunks.concat(), "Bot: Hello\nUser: I need help with my bill");
/// ```
pub fn split(text: &str, max_chars: usize) -> Result<Vec<&str>, SplitError> {
    if max_chars == 0 {
        return Err(SplitError::ZeroLimit);
    }
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let rest = &text[start..];
        let end = start
            + chunk_len(rest, max_chars).map_err(|(offset, chars)| SplitError::GraphemeTooLong {
                offset: start + offset,
                chars,
                max_chars,
            })?;
        chunks.push(&text[start..end]);
        start = end;
    }
    Ok(chunks)
}

/// Byte length of the first chunk of `rest`, or `(offset, chars)` of a grapheme that is too long.
fn chunk_len(rest: &str, max_chars: usize) -> Result<usize, (usize, usize)> {
    ascii_chunk_len(rest, max_chars).map_or_else(|| grapheme_chunk_len(rest, max_chars), Ok)
}

/// The same answer as [`grapheme_chunk_len`] without grapheme segmentation, when the window
/// is plain ASCII: there every byte is a character and a grapheme cluster of its own, except
/// `\r\n` (so windows with `\r` are left to the slow path), and a non-ASCII character right
/// after the window could be a combining mark joined to its last byte (also left to it).
/// `None` when the fast path does not apply. Transcripts are mostly ASCII; segmenting every
/// grapheme was the largest cost of starting a handover with a long transcript.
fn ascii_chunk_len(rest: &str, max_chars: usize) -> Option<usize> {
    let bytes = rest.as_bytes();
    let window = &bytes[..max_chars.min(bytes.len())];
    if !window.is_ascii() || window.contains(&b'\r') || !bytes.get(window.len()).is_none_or(u8::is_ascii) {
        return None;
    }
    if window.len() == bytes.len() {
        return Some(bytes.len());
    }
    let after = |i: usize| i + 1;
    Some(
        window
            .iter()
            .rposition(|&b| b == b'\n')
            .or_else(|| window.iter().rposition(|&b| char::from(b).is_whitespace()))
            .map_or(window.len(), after),
    )
}

/// [`chunk_len`] by grapheme cluster: the general case.
fn grapheme_chunk_len(rest: &str, max_chars: usize) -> Result<usize, (usize, usize)> {
    let mut chars = 0;
    let mut after_line_break = None;
    let mut after_space = None;
    let mut after_last_fit = 0;
    for (offset, grapheme) in rest.grapheme_indices(true) {
        let width = grapheme.chars().count();
        if chars + width > max_chars {
            if offset == 0 {
                return Err((offset, width));
            }
            return Ok(after_line_break.or(after_space).unwrap_or(after_last_fit));
        }
        chars += width;
        let end = offset + grapheme.len();
        after_last_fit = end;
        if grapheme.contains(['\n', '\r']) {
            after_line_break = Some(end);
        } else if grapheme.chars().all(char::is_whitespace) {
            after_space = Some(end);
        }
    }
    Ok(rest.len())
}

/// Renders a transcript as readable lines, one per entry: `User: …`, `Bot: …`.
///
/// ```
/// use handover_core::{Speaker, TranscriptEntry, transcript::render};
///
/// let text = render(&[
///     TranscriptEntry::new(Speaker::User, "Hi"),
///     TranscriptEntry::new(Speaker::Bot, "Hello! How can I help?"),
/// ]);
/// assert_eq!(text, "User: Hi\nBot: Hello! How can I help?");
/// ```
pub fn render(entries: &[TranscriptEntry]) -> String {
    struct Lines<'a>(&'a [TranscriptEntry]);
    impl fmt::Display for Lines<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            for (i, entry) in self.0.iter().enumerate() {
                if i > 0 {
                    f.write_str("\n")?;
                }
                write!(f, "{}: {}", entry.from.label(), entry.text)?;
            }
            Ok(())
        }
    }
    Lines(entries).to_string()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn graphemes(s: &str) -> Vec<&str> {
        s.graphemes(true).collect()
    }

    #[test]
    fn prefers_line_breaks_then_whitespace_then_graphemes() {
        assert_eq!(split("aaa\nbbb ccc", 9).unwrap(), ["aaa\n", "bbb ccc"]);
        assert_eq!(split("aaa bbb ccc", 9).unwrap(), ["aaa bbb ", "ccc"]);
        assert_eq!(split("abcdefghij", 4).unwrap(), ["abcd", "efgh", "ij"]);
    }

    #[test]
    fn text_that_fits_is_one_chunk_and_empty_text_none() {
        assert_eq!(split("hello", 5).unwrap(), ["hello"]);
        assert!(split("", 5).unwrap().is_empty());
    }

    #[test]
    fn counts_characters_not_bytes() {
        // Five CJK characters are 15 bytes.
        assert_eq!(split("你好世界啊", 5).unwrap(), ["你好世界啊"]);
        assert_eq!(split("你好世界啊", 2).unwrap(), ["你好", "世界", "啊"]);
    }

    #[test]
    fn never_cuts_an_emoji_with_modifiers_or_combining_marks() {
        // 👍🏽 is two chars; the family emoji is seven chars joined by ZWJ; é is e + U+0301.
        let family = "👨\u{200d}👩\u{200d}👧\u{200d}👦";
        let text = format!("ab👍🏽{family}e\u{301}");
        let chunks = split(&text, 7).unwrap();
        assert_eq!(chunks, ["ab👍🏽", family, "e\u{301}"]);
    }

    #[test]
    fn a_grapheme_longer_than_the_limit_is_an_error() {
        let family = "👨\u{200d}👩\u{200d}👧\u{200d}👦";
        let err = split(&format!("ab{family}"), 3).unwrap_err();
        assert_eq!(err, SplitError::GraphemeTooLong { offset: 2, chars: 7, max_chars: 3 });
        assert!(err.to_string().contains("raise the limit to at least 7"));
        assert_eq!(split("abc", 0).unwrap_err(), SplitError::ZeroLimit);
    }

    #[test]
    fn crlf_is_one_line_break() {
        assert_eq!(split("ab\r\ncd", 4).unwrap(), ["ab\r\n", "cd"]);
    }

    /// [`split`] with the grapheme path only.
    fn split_by_graphemes(text: &str, max_chars: usize) -> Vec<&str> {
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < text.len() {
            let Ok(len) = grapheme_chunk_len(&text[start..], max_chars) else { return Vec::new() };
            chunks.push(&text[start..start + len]);
            start += len;
        }
        chunks
    }

    #[test]
    fn the_ascii_path_leaves_crlf_and_combining_marks_to_graphemes() {
        assert_eq!(split("abc\r\ndef", 4).unwrap(), ["abc", "\r\n", "def"]);
        // `e` + U+0301 straddles the window: the cut goes before the `e`.
        assert_eq!(split("abce\u{301}f", 4).unwrap(), ["abc", "e\u{301}f"]);
        assert_eq!(split("ab\x0bcd ef", 5).unwrap(), ["ab\x0b", "cd ef"]);
    }

    fn text() -> impl Strategy<Value = String> {
        let pieces = prop_oneof![
            "[a-z]{1,8}",
            Just(" ".to_owned()),
            Just("\n".to_owned()),
            Just("\r\n".to_owned()),
            "[\u{4e00}-\u{4e20}]{1,4}",
            Just("👍🏽".to_owned()),
            Just("👨\u{200d}👩\u{200d}👧".to_owned()),
            Just("e\u{301}".to_owned()),
            Just("\u{1f1e9}\u{1f1ea}".to_owned()),
            any::<String>(),
        ];
        prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn chunks_round_trip_and_respect_the_limit(text in text(), max in 1usize..40) {
            let longest = text.graphemes(true).map(|g| g.chars().count()).max().unwrap_or(0);
            match split(&text, max) {
                Ok(chunks) => {
                    prop_assert!(longest <= max);
                    prop_assert_eq!(chunks.concat(), text.clone());
                    for chunk in &chunks {
                        prop_assert!(!chunk.is_empty());
                        prop_assert!(chunk.chars().count() <= max);
                    }
                    // Every chunk boundary is a grapheme boundary of the input.
                    let rejoined: Vec<&str> = chunks.iter().flat_map(|c| graphemes(c)).collect();
                    prop_assert_eq!(rejoined, graphemes(&text));
                }
                Err(SplitError::GraphemeTooLong { chars, max_chars, .. }) => {
                    prop_assert!(longest > max);
                    prop_assert!(chars > max_chars);
                }
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
        }

        #[test]
        fn the_ascii_path_agrees_with_the_grapheme_path(
            pieces in prop::collection::vec(prop_oneof![
                "[a-z]{1,12}",
                "[ \t\n\r\x0b\x0c]",
                Just("e\u{301}".to_owned()),
                Just("\u{301}".to_owned()),
                Just("👍🏽".to_owned()),
            ], 0..30),
            max in 1usize..30,
        ) {
            let text = pieces.concat();
            if let Ok(chunks) = split(&text, max) {
                prop_assert_eq!(chunks, split_by_graphemes(&text, max));
            }
        }

        #[test]
        fn chunks_are_as_full_as_the_boundaries_allow(text in "[a-z]{0,200}", max in 1usize..50) {
            // Without spaces or line breaks every chunk but the last is exactly full.
            let chunks = split(&text, max).unwrap();
            if let Some((last, full)) = chunks.split_last() {
                for chunk in full {
                    prop_assert_eq!(chunk.chars().count(), max);
                }
                prop_assert!(last.chars().count() <= max);
            }
        }
    }
}
