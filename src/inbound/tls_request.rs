//! The sender's TLS request of one message (RFC 8689): the `REQUIRETLS`
//! MAIL parameter (section 4.1; the session accepts it only under TLS) or
//! a `TLS-Required: No` header field (section 3). With REQUIRETLS the
//! header field is ignored (section 3: "If the REQUIRETLS MAIL FROM
//! parameter is specified, the TLS-Required header field MUST be
//! ignored"). The result is stored with the queued message
//! ([`sealpost_queue::TlsRequest`]) for the delivery code.

use sealpost_queue::TlsRequest;

/// The request of a message given its MAIL parameter and the start of its
/// content (the header section is read up to the first empty line).
pub(crate) fn tls_request(requiretls: bool, head: &[u8]) -> TlsRequest {
    if requiretls {
        TlsRequest::RequireTls
    } else if tls_required_no(head) {
        TlsRequest::TlsOptional
    } else {
        TlsRequest::None
    }
}

/// Whether the header section holds `TLS-Required: No` (field name and
/// value case-insensitive, folding and surrounding white space allowed).
/// Any other value is not the RFC's and is ignored.
pub(crate) fn tls_required_no(head: &[u8]) -> bool {
    let mut fields: Vec<Vec<u8>> = Vec::new();
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        match (line[0], fields.last_mut()) {
            (b' ' | b'\t', Some(field)) => field.extend_from_slice(line),
            _ => fields.push(line.to_vec()),
        }
    }
    fields.iter().any(|field| {
        let Some(colon) = field.iter().position(|&b| b == b':') else {
            return false;
        };
        let (name, value) = (&field[..colon], &field[colon + 1..]);
        name.trim_ascii().eq_ignore_ascii_case(b"TLS-Required")
            && value.trim_ascii().eq_ignore_ascii_case(b"No")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_field_and_the_parameter() {
        let table: &[(bool, &str, TlsRequest)] = &[
            (false, "Subject: x\r\n\r\nbody", TlsRequest::None),
            (
                false,
                "Subject: x\r\nTLS-Required: No\r\n\r\nbody",
                TlsRequest::TlsOptional,
            ),
            (
                false,
                "tls-required:   no  \r\n\r\n",
                TlsRequest::TlsOptional,
            ),
            (
                false,
                "TLS-Required:\r\n No\r\nSubject: y\r\n\r\n",
                TlsRequest::TlsOptional,
            ),
            (false, "TLS-Required: Yes\r\n\r\n", TlsRequest::None),
            (false, "TLS-Required: No thanks\r\n\r\n", TlsRequest::None),
            (false, "X-TLS-Required: No\r\n\r\n", TlsRequest::None),
            // In the body, not a header field.
            (
                false,
                "Subject: x\r\n\r\nTLS-Required: No\r\n",
                TlsRequest::None,
            ),
            (false, "Subject: x\n\nTLS-Required: No\n", TlsRequest::None),
            // REQUIRETLS wins over the header field (RFC 8689 section 3).
            (true, "TLS-Required: No\r\n\r\n", TlsRequest::RequireTls),
            (true, "Subject: x\r\n\r\n", TlsRequest::RequireTls),
        ];
        for (requiretls, message, want) in table {
            assert_eq!(
                tls_request(*requiretls, message.as_bytes()),
                *want,
                "{requiretls} {message:?}"
            );
        }
    }
}
