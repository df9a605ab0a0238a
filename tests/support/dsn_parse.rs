//! A minimal MIME and header-field parser for DSNs (RFC 3464 / RFC 6522),
//! written independently of the builder so tests check the wire form.

/// Header fields (unfolded, names lower-cased) and the body.
pub fn split_entity(text: &str) -> (Vec<(String, String)>, String) {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    (fields(head), body.to_string())
}

/// Parses a block of header fields, unfolding continuation lines.
pub fn fields(block: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in block.split("\r\n").filter(|l| !l.is_empty()) {
        if line.starts_with(' ') || line.starts_with('\t') {
            let last = out.last_mut().expect("continuation after a field");
            last.1.push(' ');
            last.1.push_str(line.trim());
        } else {
            let (name, value) = line.split_once(':').expect("name: value");
            out.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    out
}

pub fn get<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

pub fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.eq_ignore_ascii_case(name)
            .then(|| v.trim_matches('"').to_string())
    })
}

pub struct Parsed {
    pub top: Vec<(String, String)>,
    pub parts: Vec<(Vec<(String, String)>, String)>,
    pub boundary: String,
}

pub fn parse(message: &[u8]) -> Parsed {
    let text = std::str::from_utf8(message).expect("DSN is UTF-8");
    for line in text.split("\r\n") {
        assert!(line.len() <= 998, "line too long: {}", line.len());
    }
    assert!(
        !text.replace("\r\n", "").contains('\n') && !text.replace("\r\n", "").contains('\r'),
        "bare CR or LF"
    );
    let (top, body) = split_entity(text);
    let ct = get(&top, "content-type").expect("content-type");
    assert!(ct.starts_with("multipart/report;"), "{ct}");
    assert_eq!(param(ct, "report-type").as_deref(), Some("delivery-status"));
    let boundary = param(ct, "boundary").expect("boundary");
    let delimiter = format!("\r\n--{boundary}");
    let body = format!("\r\n{body}");
    let mut pieces: Vec<&str> = body.split(&delimiter).collect();
    let preamble = pieces.remove(0);
    assert!(!preamble.contains(&boundary));
    let last = pieces.pop().expect("close delimiter");
    assert!(last.starts_with("--"), "closing delimiter");
    let parts = pieces
        .into_iter()
        .map(|p| split_entity(p.strip_prefix("\r\n").expect("CRLF after delimiter")))
        .collect();
    Parsed {
        top,
        parts,
        boundary,
    }
}

/// The per-recipient field blocks of a DSN (from its
/// `message/delivery-status` part), in order.
pub fn recipient_blocks(dsn: &[u8]) -> Vec<Vec<(String, String)>> {
    let parsed = parse(dsn);
    let status = parsed
        .parts
        .iter()
        .find(|(fields, _)| {
            get(fields, "content-type").is_some_and(|ct| ct.starts_with("message/delivery-status"))
        })
        .map(|(_, body)| body.clone())
        .expect("a message/delivery-status part");
    // Per-message fields, then one block per recipient, blank-line separated.
    status
        .split("\r\n\r\n")
        .skip(1)
        .filter(|block| !block.trim().is_empty())
        .map(fields)
        .collect()
}

/// The per-recipient fields of a DSN with one recipient.
pub fn recipient_fields(dsn: &[u8]) -> Vec<(String, String)> {
    let mut blocks = recipient_blocks(dsn);
    assert_eq!(blocks.len(), 1, "one recipient: {blocks:?}");
    blocks.remove(0)
}
