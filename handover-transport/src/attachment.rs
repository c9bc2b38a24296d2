//! Attachments on the wire: fetching a file from a URL when the caller asks for it, and
//! the multipart part every uploading provider sends.

use handover_core::{Attachment, AttachmentContent, Error, Result};
use reqwest::Url;

use crate::http::{is_loopback_host, read_body, request_error};

/// Fetches the file `attachment` points at and returns it with its bytes, so it can be
/// sent to a provider that uploads files ([`Capabilities::attachment_uploads`]).
///
/// The library never fetches a URL on its own: this runs only when the caller calls it.
/// Only `https://` URLs are fetched, and plain `http://` only to a loopback host (tests,
/// a local file server). The body is read up to `max_bytes`; a larger file is an
/// [`InvalidInput`](handover_core::ErrorKind::InvalidInput) error naming the limit. An
/// attachment that already has bytes is returned as it is. Errors never carry the URL
/// (pre-signed URLs hold tokens).
///
/// [`Capabilities::attachment_uploads`]: handover_core::Capabilities::attachment_uploads
pub async fn fetch(client: &reqwest::Client, attachment: Attachment, max_bytes: u64) -> Result<Attachment> {
    const OP: &str = "fetch attachment";
    let AttachmentContent::Url(url) = &attachment.content else {
        return Ok(attachment);
    };
    let parsed = Url::parse(url)
        .map_err(|e| Error::invalid_input("attachment", OP, format!("the attachment URL does not parse ({e})")))?;
    let loopback = is_loopback_host(parsed.host_str().unwrap_or_default());
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        other => {
            return Err(Error::invalid_input(
                "attachment",
                OP,
                format!(
                    "attachment URLs are fetched only over https (plain http only from loopback); this one is {other}://"
                ),
            ));
        }
    }
    let response = client.get(parsed).send().await.map_err(|e| request_error("attachment", OP, e))?;
    if !response.status().is_success() {
        return Err(Error::invalid_input(
            "attachment",
            OP,
            format!("the attachment URL answered {}", response.status().as_u16()),
        ));
    }
    let limit = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    let data = read_body("attachment", OP, response, limit).await.map_err(|_| {
        Error::invalid_input("attachment", OP, format!("the file is larger than the limit of {max_bytes} bytes"))
    })?;
    let mut fetched = Attachment::bytes(attachment.name, attachment.media_type, data);
    fetched.caption = attachment.caption;
    Ok(fetched)
}

/// The multipart part for an attachment's bytes, with its file name and media type.
///
/// Fails with `InvalidInput` when the attachment is a URL (the session handle refuses
/// those before any I/O for providers that upload) or its media type does not parse.
pub fn file_part(provider: &'static str, attachment: &Attachment) -> Result<reqwest::multipart::Part> {
    let Some(data) = attachment.data() else {
        return Err(Error::invalid_input(provider, "send attachment", "this provider uploads files: pass the bytes"));
    };
    reqwest::multipart::Part::bytes(data.to_vec())
        .file_name(attachment.name.clone())
        .mime_str(&attachment.media_type)
        .map_err(|_| {
            Error::invalid_input(
                provider,
                "send attachment",
                format!("`{}` is not a valid media type", attachment.media_type),
            )
        })
}
