//! Safe header text: remote reply text and addresses go into DSN fields, so
//! CR, LF and other controls become spaces (no header injection), runs of
//! white space collapse, long values are truncated on a character boundary
//! and folded (RFC 5322 section 2.2.3) so every line stays within 78
//! characters where a space allows and always within the 998 limit
//! (section 2.1.1).

/// Longest field value kept, in octets; with the name this keeps any line,
/// even an unfoldable one, below 998.
pub const MAX_VALUE: usize = 900;
/// Fold target (RFC 5322 section 2.1.1 "SHOULD").
const FOLD_AT: usize = 78;

/// Replaces controls (CR and LF included) with spaces, collapses white
/// space, trims, and with `ascii_only` replaces non-ASCII with `?`
/// (`message/delivery-status` is ASCII, RFC 3464 section 2.1.3).
pub fn clean(text: &str, ascii_only: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else if ascii_only && !c.is_ascii() {
            '?'
        } else {
            c
        };
        if c == ' ' {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
    }
    truncate(&mut out, MAX_VALUE);
    out
}

/// Cuts `s` to at most `max` octets on a character boundary, marking the
/// cut with `...`.
fn truncate(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str("...");
}

/// `Name: value` folded at spaces, ending in CRLF. `value` must already be
/// [`clean`].
pub fn field(name: &str, value: &str) -> String {
    let mut out = format!("{name}:");
    let mut line_len = out.len();
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        if line_len + 1 + word.len() > FOLD_AT && line_len > name.len() + 1 {
            out.push_str("\r\n");
            line_len = 0;
        }
        out.push(' ');
        out.push_str(word);
        line_len += 1 + word.len();
    }
    out.push_str("\r\n");
    out
}

/// Wraps free text into CRLF lines of at most 78 characters where spaces
/// allow (`text` must be [`clean`]).
pub fn wrap(text: &str) -> String {
    let mut out = String::new();
    let mut line_len = 0;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if line_len > 0 && line_len + 1 + word.len() > FOLD_AT {
            out.push_str("\r\n");
            line_len = 0;
        }
        if line_len > 0 {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += word.len();
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_table() {
        let table = [
            ("550 no\r\nBcc: evil@x", false, "550 no Bcc: evil@x"),
            ("  a\t\tb \x00 c  ", false, "a b c"),
            ("café", true, "caf?"),
            ("café", false, "café"),
            ("\r\n", false, ""),
        ];
        for (input, ascii, expect) in table {
            assert_eq!(clean(input, ascii), expect, "{input:?}");
        }
    }

    #[test]
    fn long_values_are_truncated_and_folded() {
        let long = "word ".repeat(500);
        let v = clean(&long, true);
        assert!(v.len() <= MAX_VALUE && v.ends_with("..."));
        let f = field("Diagnostic-Code", &format!("smtp; {v}"));
        for line in f.split("\r\n") {
            assert!(line.len() <= FOLD_AT, "{line:?}");
        }
        // Unfolding restores the value.
        assert_eq!(f.replace("\r\n", ""), format!("Diagnostic-Code: smtp; {v}"));
        // One huge word cannot be folded but stays below 998.
        let huge = clean(&"x".repeat(5000), true);
        let f = field("Diagnostic-Code", &huge);
        assert!(f.split("\r\n").all(|l| l.len() <= 998));
        // Truncation respects character boundaries.
        let v = clean(&"é".repeat(1000), false);
        assert!(v.len() <= MAX_VALUE);
    }

    #[test]
    fn wrap_keeps_lines_short() {
        let w = wrap(&clean(&"abc ".repeat(100), true));
        assert!(w.split("\r\n").all(|l| l.len() <= FOLD_AT));
        assert_eq!(w.replace("\r\n", " ").trim(), "abc ".repeat(100).trim());
    }
}
