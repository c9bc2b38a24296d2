//! `multipart/form-data` bodies (RFC 7578), as every emulated upload endpoint reads them
//! (8x8's attachments, MIAW's `/file`, Live Agent's messages).

use axum::http::HeaderMap;

/// One part of a `multipart/form-data` body.
#[derive(Debug)]
pub(crate) struct FormPart {
    /// The `name` of its `Content-Disposition`.
    pub(crate) name: String,
    /// The `filename`, for a file.
    pub(crate) filename: Option<String>,
    /// Its `Content-Type`.
    pub(crate) content_type: Option<String>,
    /// The content.
    pub(crate) data: Vec<u8>,
}

impl FormPart {
    /// The content as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// The parts of a `multipart/form-data` body (RFC 7578) whose `Content-Type` header is in
/// `headers`; a description of what is wrong otherwise.
pub(crate) fn form_data(headers: &HeaderMap, body: &[u8]) -> Result<Vec<FormPart>, String> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    parse(content_type, body)
}

/// The parts of a `multipart/form-data` body with the given `Content-Type` value.
pub(crate) fn parse(content_type: &str, body: &[u8]) -> Result<Vec<FormPart>, String> {
    let mut params = content_type.split(';');
    if !params.next().unwrap_or_default().trim().eq_ignore_ascii_case("multipart/form-data") {
        return Err(format!("expected a multipart/form-data body, got `{content_type}`"));
    }
    let boundary = params
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .find(|b| !b.is_empty())
        .ok_or("the multipart body has no boundary")?;
    let delimiter = format!("--{boundary}");
    let next_delimiter = format!("\r\n--{boundary}");
    let start = find(body, delimiter.as_bytes()).ok_or("the body has no multipart delimiter")?;
    let mut rest = &body[start + delimiter.len()..];
    let mut parts = Vec::new();
    while !rest.starts_with(b"--") {
        rest = rest.strip_prefix(b"\r\n").ok_or("a multipart delimiter is not followed by CRLF")?;
        let head_end = find(rest, b"\r\n\r\n").ok_or("a part has no end of headers")?;
        let head = std::str::from_utf8(&rest[..head_end]).map_err(|_| "a part's headers are not UTF-8")?;
        let content = &rest[head_end + 4..];
        let end = find(content, next_delimiter.as_bytes()).ok_or("a part has no closing delimiter")?;
        let mut part =
            FormPart { name: String::new(), filename: None, content_type: None, data: content[..end].to_vec() };
        for line in head.split("\r\n") {
            let Some((header, value)) = line.split_once(':') else { continue };
            if header.trim().eq_ignore_ascii_case("content-disposition") {
                part.name = disposition_param(value, "name").unwrap_or_default();
                part.filename = disposition_param(value, "filename");
            } else if header.trim().eq_ignore_ascii_case("content-type") {
                part.content_type = Some(value.trim().to_owned());
            }
        }
        parts.push(part);
        rest = &content[end + next_delimiter.len()..];
    }
    Ok(parts)
}

/// The value of `key=` in a `Content-Disposition` value: a quoted string (with `\`
/// escapes) or a token.
fn disposition_param(header: &str, key: &str) -> Option<String> {
    let mut rest = header;
    loop {
        let at = rest.find(';')?;
        rest = rest[at + 1..].trim_start();
        let Some(value) = rest.strip_prefix(key).and_then(|r| r.strip_prefix('=')) else { continue };
        let Some(quoted) = value.strip_prefix('"') else {
            return Some(value.split(';').next().unwrap_or_default().trim().to_owned());
        };
        let mut out = String::new();
        let mut chars = quoted.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.extend(chars.next()),
                '"' => return Some(out),
                c => out.push(c),
            }
        }
        return None;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn multipart(boundary: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!("multipart/form-data; boundary={boundary}");
        headers.insert("content-type", value.parse().expect("a header value"));
        headers
    }

    #[test]
    fn form_data_reads_names_escaped_file_names_types_and_binary_content() {
        let mut body = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; filename=\"a \\\"b\\\".png\"; name=\"attachment\"\r\nContent-Type: image/png\r\n\r\n".to_vec();
        body.extend_from_slice(&[0, 13, 10, 45, 45, 255]);
        body.extend_from_slice(
            b"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"authorType\"\r\n\r\nuser\r\n--XyZ--\r\n",
        );
        let parts = form_data(&multipart("XyZ"), &body).expect("a valid body");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "attachment");
        assert_eq!(parts[0].filename.as_deref(), Some("a \"b\".png"));
        assert_eq!(parts[0].content_type.as_deref(), Some("image/png"));
        assert_eq!(parts[0].data, [0, 13, 10, 45, 45, 255]);
        assert_eq!(
            (parts[1].name.as_str(), parts[1].text(), parts[1].filename.as_deref()),
            ("authorType", "user".into(), None)
        );
    }

    #[test]
    fn form_data_refuses_what_is_not_a_whole_multipart_body() {
        let mut json = HeaderMap::new();
        json.insert("content-type", "application/json".parse().expect("a header value"));
        assert!(form_data(&json, b"{}").is_err());
        assert!(form_data(&multipart(""), b"--\r\n").is_err(), "no boundary");
        let truncated = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end";
        assert!(form_data(&multipart("XyZ"), truncated).is_err());
        assert!(form_data(&multipart("XyZ"), b"--XyZ\r\nno headers end").is_err());
    }

    #[test]
    fn multipart_bodies_split_into_fields_and_files() {
        let body = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\nhi; there\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"attachments[]\"; filename=\"a \\\"b\\\".png\"\r\n\
Content-Type: image/png\r\n\r\n\x89PNG\r\n--X\r\n--XyZ--\r\n";
        let parts = parse("multipart/form-data; boundary=XyZ", body).expect("parses");
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].name.as_str(), parts[0].filename.as_deref(), &parts[0].data[..]),
            ("content", None, &b"hi; there"[..])
        );
        assert_eq!(parts[1].name, "attachments[]");
        assert_eq!(parts[1].filename.as_deref(), Some("a \"b\".png"));
        assert_eq!(parts[1].content_type.as_deref(), Some("image/png"));
        assert_eq!(parts[1].data, b"\x89PNG\r\n--X");
        assert!(parse("multipart/form-data", body).is_err(), "no boundary");
        assert!(parse("multipart/form-data; boundary=XyZ", b"--XyZ\r\nno end").is_err());
    }
}
