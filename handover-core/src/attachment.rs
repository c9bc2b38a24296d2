//! Files relayed with messages, both ways.
//!
//! An [`Attachment`] names a file (name, media type, size) and carries it one of two ways:
//! a URL the receiver can fetch ([`AttachmentContent::Url`]) or the bytes to upload
//! ([`AttachmentContent::Bytes`]). Agent-side attachments arrive as URLs on
//! [`Event::AgentMessage`](crate::Event::AgentMessage); the end user's go out with
//! [`UserInput::Attachment`](crate::UserInput::Attachment).
//!
//! URLs are often pre-signed (they carry an access token in their query), so an
//! attachment's `Debug` shows the URL without its query and fragment, and nothing in this
//! workspace logs the full URL.

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A file sent with a message.
///
/// In JSON (the CLI line protocol, the service API):
/// `{"name":"invoice.pdf","media_type":"application/pdf","size":48213,"url":"https://…"}`,
/// or with `"data":"<base64>"` instead of `"url"` for bytes; `"caption"` is optional.
///
/// ```
/// use handover_core::{Attachment, AttachmentContent};
///
/// let file = Attachment::bytes("label.png", "image/png", vec![0x89, b'P', b'N', b'G']).with_caption("Your label");
/// assert_eq!(file.size, Some(4));
/// let json = serde_json::to_value(&file).unwrap();
/// assert_eq!(json["data"], "iVBORw==");
/// let back: Attachment = serde_json::from_value(json).unwrap();
/// assert_eq!(back, file);
///
/// let link = Attachment::url("a.pdf", "application/pdf", "https://files.example/a.pdf?sig=secret");
/// assert!(!format!("{link:?}").contains("secret"));
/// assert!(matches!(link.content, AttachmentContent::Url(_)));
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Attachment {
    /// The file name shown to the receiver (`invoice.pdf`).
    pub name: String,
    /// The media type (`application/pdf`, `image/png`).
    pub media_type: String,
    /// The size in bytes, when known (always known for bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Where the file is: a URL or its bytes.
    #[serde(flatten)]
    pub content: AttachmentContent,
    /// A caption sent with the file, where the provider carries one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
}

/// Where an attachment's content is.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentContent {
    /// A URL the receiver can fetch (often pre-signed: treat it as a secret).
    Url(String),
    /// The bytes to upload; base64 (standard alphabet, padded) under `"data"` in JSON.
    #[serde(rename = "data", serialize_with = "to_base64", deserialize_with = "from_base64")]
    Bytes(Vec<u8>),
}

fn to_base64<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn from_base64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(deserializer)?;
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|e| serde::de::Error::custom(format!("`data` is not standard base64: {e}")))
}

impl Attachment {
    /// A file to upload from its bytes; the size is the length of `bytes`.
    pub fn bytes(name: impl Into<String>, media_type: impl Into<String>, bytes: Vec<u8>) -> Self {
        Self {
            name: name.into(),
            media_type: media_type.into(),
            size: Some(bytes.len() as u64),
            content: AttachmentContent::Bytes(bytes),
            caption: None,
        }
    }

    /// A file the receiver fetches from `url`; the size is unknown until set.
    pub fn url(name: impl Into<String>, media_type: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            media_type: media_type.into(),
            size: None,
            content: AttachmentContent::Url(url.into()),
            caption: None,
        }
    }

    /// Sets the size in bytes.
    #[must_use]
    pub fn with_size(mut self, size: Option<u64>) -> Self {
        self.size = size;
        self
    }

    /// Sets the caption.
    #[must_use]
    pub fn with_caption(mut self, caption: impl Into<String>) -> Self {
        self.caption = Some(caption.into());
        self
    }

    /// The URL, when the content is one.
    pub fn url_str(&self) -> Option<&str> {
        match &self.content {
            AttachmentContent::Url(url) => Some(url),
            AttachmentContent::Bytes(_) => None,
        }
    }

    /// The bytes, when the content is bytes.
    pub fn data(&self) -> Option<&[u8]> {
        match &self.content {
            AttachmentContent::Bytes(bytes) => Some(bytes),
            AttachmentContent::Url(_) => None,
        }
    }

    /// The size as far as it is known: the length of the bytes, else the declared size.
    pub fn known_size(&self) -> Option<u64> {
        match &self.content {
            AttachmentContent::Bytes(bytes) => Some(bytes.len() as u64),
            AttachmentContent::Url(_) => self.size,
        }
    }
}

/// `url` reduced to its scheme and host, for logs and `Debug`: pre-signed URLs carry
/// their token in the query, and some (Chatwoot's `data_url`, signed blob ids) in the path.
///
/// ```
/// use handover_core::attachment::redact_url;
///
/// assert_eq!(redact_url("https://files.example/blobs/SECRET/a.pdf?sig=x"), "https://files.example/…");
/// ```
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if scheme.is_empty() { "…".to_owned() } else { format!("{scheme}://{host}/…") }
}

impl fmt::Debug for AttachmentContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachmentContent::Url(url) => f.debug_tuple("Url").field(&redact_url(url)).finish(),
            AttachmentContent::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
        }
    }
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("name", &self.name)
            .field("media_type", &self.media_type)
            .field("size", &self.size)
            .field("content", &self.content)
            .field("caption", &self.caption)
            .finish()
    }
}

/// Whether `media_type` is one of `accepted` (`type/subtype`, or `type/*` for a whole
/// top-level type; compared without parameters and case-insensitively). An empty
/// `accepted` list accepts everything.
///
/// ```
/// use handover_core::attachment::media_type_accepted;
///
/// assert!(media_type_accepted("image/PNG; q=1", &["image/*", "application/pdf"]));
/// assert!(media_type_accepted("application/pdf", &["image/*", "application/pdf"]));
/// assert!(!media_type_accepted("application/x-msdownload", &["image/*", "application/pdf"]));
/// assert!(media_type_accepted("anything/at-all", &[]));
/// ```
pub fn media_type_accepted(media_type: &str, accepted: &[&str]) -> bool {
    if accepted.is_empty() {
        return true;
    }
    let essence = media_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let Some((top, _)) = essence.split_once('/') else {
        return false;
    };
    accepted.iter().any(|a| match a.strip_suffix("/*") {
        Some(prefix) => prefix.eq_ignore_ascii_case(top),
        None => a.eq_ignore_ascii_case(&essence),
    })
}

/// A media type for a file name, from its extension (common document, image, audio and
/// video types); `application/octet-stream` when the extension is unknown. Containers
/// that hold either audio or video (`mp4`, `webm`, `3gp`) read as video.
///
/// ```
/// use handover_core::attachment::guess_media_type;
///
/// assert_eq!(guess_media_type("Invoice.PDF"), "application/pdf");
/// assert_eq!(guess_media_type("scan.jpeg"), "image/jpeg");
/// assert_eq!(guess_media_type("notes"), "application/octet-stream");
/// ```
pub fn guess_media_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        "heic" => "image/heic",
        "svg" => "image/svg+xml",
        "tif" | "tiff" => "image/tiff",
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        "ogv" => "video/ogg",
        "3gp" => "video/3gpp",
        "mov" => "video/quicktime",
        "mpeg" | "mpg" => "video/mpeg",
        "m4a" => "audio/mp4",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "aac" => "audio/aac",
        "amr" => "audio/amr",
        "pdf" => "application/pdf",
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "xml" => "application/xml",
        "zip" => "application/zip",
        "rtf" => "application/rtf",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "ppt" => "application/vnd.ms-powerpoint",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_json_shape_round_trips() {
        let file = Attachment::url("a.pdf", "application/pdf", "https://x/a.pdf").with_size(Some(12));
        let json = serde_json::to_value(&file).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name": "a.pdf", "media_type": "application/pdf", "size": 12, "url": "https://x/a.pdf"})
        );
        assert_eq!(serde_json::from_value::<Attachment>(json).unwrap(), file);
    }

    #[test]
    fn bad_base64_is_a_clear_error() {
        let error = serde_json::from_value::<Attachment>(
            serde_json::json!({"name": "a", "media_type": "text/plain", "data": "not base64!"}),
        )
        .unwrap_err();
        assert!(error.to_string().contains("not standard base64"), "{error}");
    }

    #[test]
    fn neither_url_nor_data_is_an_error() {
        assert!(
            serde_json::from_value::<Attachment>(serde_json::json!({"name": "a", "media_type": "text/plain"})).is_err()
        );
    }

    #[test]
    fn redaction_keeps_only_scheme_and_host() {
        assert_eq!(redact_url("https://h/p?X-Amz-Signature=abc"), "https://h/…");
        assert_eq!(redact_url("https://h/p#t=1"), "https://h/…");
        assert_eq!(redact_url("https://user:pw@h:8443/blob/SECRET/a.pdf"), "https://h:8443/…");
        assert_eq!(redact_url("not a url"), "…");
        let debug = format!("{:?}", Attachment::bytes("a", "b/c", vec![1, 2, 3]));
        assert!(debug.contains("Bytes(3 bytes)"), "{debug}");
    }
}
