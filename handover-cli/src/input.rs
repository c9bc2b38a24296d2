//! stdin lines → node inputs.

use handover::node::NodeInput;
use tokio::io::{AsyncBufReadExt, BufReader};
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
    } else if line == "/connected" {
        NodeInput::Connected
    } else if line == "/disconnected" {
        NodeInput::Disconnected
    } else {
        NodeInput::Message { text: line.to_owned() }
    };
    Ok(Some(input))
}

/// Reads stdin into `tx` until end of input (then drops `tx`: no more user input).
pub(crate) fn spawn_stdin(tx: mpsc::Sender<NodeInput>, json: bool) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => match parse(&line, json) {
                    Ok(Some(input)) => {
                        if tx.send(input).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(message) => eprintln!("warning: {message}"),
                },
                Ok(None) => return,
                Err(error) => {
                    eprintln!("warning: stdin could not be read ({error}); no more user input");
                    return;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_are_messages_and_slash_commands_the_rest() {
        assert_eq!(parse("Hello", false), Ok(Some(NodeInput::Message { text: "Hello".into() })));
        assert_eq!(
            parse("/intent cancel_handover", false),
            Ok(Some(NodeInput::Intent { name: "cancel_handover".into() }))
        );
        assert_eq!(parse("/button Cancel", false), Ok(Some(NodeInput::Button { text: "Cancel".into() })));
        assert_eq!(parse("/connected", false), Ok(Some(NodeInput::Connected)));
        assert_eq!(parse("/disconnected\r\n", false), Ok(Some(NodeInput::Disconnected)));
        assert_eq!(parse("   ", false), Ok(None));
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
