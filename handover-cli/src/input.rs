//! stdin lines → node inputs.

use std::io::{BufRead, Write};

use handover::node::{NodeInput, NodeOutput};
use tokio::sync::mpsc;

/// Parses one line: JSON in `--json` mode, else text with `/command` escapes.
pub(crate) fn parse(line: &str, json: bool) -> Result<Option<NodeInput>, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(None);
    }
    if json {
        return serde_json::from_str(line).map(Some).map_err(|e| {
            format!(
                "ignoring a stdin line that is not an input object ({e}); expected e.g. \
                 {{\"type\":\"message\",\"text\":\"Hi\"}}"
            )
        });
    }
    let input = if let Some(name) = line.strip_prefix("/intent ") {
        NodeInput::Intent { name: name.trim().to_owned() }
    } else if let Some(text) = line.strip_prefix("/button ") {
        NodeInput::Button { text: text.trim().to_owned() }
    } else if let Some(path) = line.strip_prefix("/file ") {
        let path = std::path::PathBuf::from(path.trim());
        NodeInput::Attachment {
            name: None,
            media_type: None,
            url: None,
            path: Some(path),
            data: None,
            caption: None,
            fetch: false,
            id: None,
        }
    } else if line == "/connected" {
        NodeInput::Connected
    } else if line == "/disconnected" {
        NodeInput::Disconnected
    } else {
        NodeInput::Message { text: line.to_owned(), id: None }
    };
    Ok(Some(input))
}

/// Reads stdin into `tx` on a plain thread until end of input (then drops `tx`: no more
/// user input).
///
/// A thread of its own, not the runtime's blocking pool: a read from a pipe the bot keeps
/// open cannot be cancelled, and the runtime waits for its blocking tasks on shutdown, so
/// `handover chat` would never exit after its final status. Nothing waits for this thread.
/// A line that is not an input (bad JSON, invalid UTF-8) is refused with an
/// `input_rejected` line in `--json` mode, a warning otherwise, and reading goes on.
pub(crate) fn spawn_stdin(tx: mpsc::Sender<NodeInput>, json: bool) {
    let spawned = std::thread::Builder::new().name("stdin".to_owned()).spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match stdin.read_until(b'\n', &mut buffer) {
                Ok(0) => return,
                Ok(_) => {}
                Err(error) => {
                    eprintln!("warning: stdin could not be read ({error}); no more user input");
                    return;
                }
            }
            let parsed = match std::str::from_utf8(&buffer) {
                Ok(line) => parse(line, json),
                Err(_) => Err("ignoring a stdin line that is not UTF-8".to_owned()),
            };
            match parsed {
                Ok(Some(input)) => {
                    if tx.blocking_send(input).is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(message) => refuse(&message, json),
            }
        }
    });
    if let Err(error) = spawned {
        eprintln!("warning: stdin cannot be read ({error}); no user input");
    }
}

/// Tells the bot a line was not taken: an `input_rejected` line with `--json`.
fn refuse(message: &str, json: bool) {
    if json {
        let line = NodeOutput::InputRejected { reason: message.to_owned(), id: None };
        if let Ok(text) = serde_json::to_string(&line) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }
    eprintln!("warning: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_are_messages_and_slash_commands_the_rest() {
        assert_eq!(parse("Hello", false), Ok(Some(NodeInput::Message { text: "Hello".into(), id: None })));
        assert_eq!(
            parse("/intent cancel_handover", false),
            Ok(Some(NodeInput::Intent { name: "cancel_handover".into() }))
        );
        assert_eq!(parse("/button Cancel", false), Ok(Some(NodeInput::Button { text: "Cancel".into() })));
        assert_eq!(parse("/connected", false), Ok(Some(NodeInput::Connected)));
        assert_eq!(parse("/disconnected\r\n", false), Ok(Some(NodeInput::Disconnected)));
        assert_eq!(parse("   ", false), Ok(None));
        assert_eq!(
            parse("/file ./scans/invoice.pdf\n", false),
            Ok(Some(NodeInput::Attachment {
                name: None,
                media_type: None,
                url: None,
                path: Some("./scans/invoice.pdf".into()),
                data: None,
                caption: None,
                fetch: false,
                id: None,
            }))
        );
    }

    #[test]
    fn json_attachment_lines_take_a_url_path_or_data() {
        let Ok(Some(NodeInput::Attachment { name, url, fetch, id, .. })) = parse(
            r#"{"type":"attachment","url":"https://x/a.pdf","name":"a.pdf","media_type":"application/pdf","fetch":true,"id":"f-1"}"#,
            true,
        ) else {
            panic!("an attachment line")
        };
        assert_eq!(
            (name.as_deref(), url.as_deref(), fetch, id.as_deref()),
            (Some("a.pdf"), Some("https://x/a.pdf"), true, Some("f-1"))
        );
        let error = parse(r#"{"type":"attachment","name":"a","colour":"red"}"#, true).unwrap_err();
        assert!(error.contains("colour"), "{error}");
    }

    #[test]
    fn json_lines_are_input_objects() {
        assert_eq!(
            parse(r#"{"type":"button","text":"Cancel"}"#, true),
            Ok(Some(NodeInput::Button { text: "Cancel".into() }))
        );
        assert!(parse("Hello", true).unwrap_err().contains("expected e.g."));
    }
}
