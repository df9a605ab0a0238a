//! Reading a large configuration file without holding its whole TOML
//! document at once (issue 17).
//!
//! `toml::from_str` builds a tree of the whole document, every key and
//! value with its span, before deserializing it: for 100,000 managed
//! domains that tree alone is hundreds of megabytes. Here the file is first
//! scanned with the TOML lexer (no tree) for its top-level table headers;
//! each `[[domains]]` table with the `[domains.*]` / `[[domains.*]]` tables
//! that follow it is one *domain section*, deserialized on its own (in
//! parallel, one contiguous run of sections per core), and the rest of the
//! file (the *prelude*) is deserialized with the domain sections blanked
//! out, so that every byte keeps its offset and errors keep their lines.
//!
//! Whenever the file's shape is anything but plain (a `[domains.x]` table
//! outside a domain section, an inline `domains = [...]` array, a quoted
//! key with escapes), [`split`] returns `None` and the caller reads the
//! whole document as before: the result, errors included, is the same.

use std::borrow::Cow;
use std::ops::Range;

use toml_parser::lexer::TokenKind;
use toml_parser::Source;

/// A configuration file cut into its prelude and its domain sections.
#[derive(Debug)]
pub(super) struct Sections<'a> {
    /// The file with every domain section replaced by spaces (newlines
    /// kept), so offsets in it are offsets in the file.
    pub prelude: Cow<'a, str>,
    /// Byte ranges of the domain sections, in file order; each starts at
    /// the beginning of its `[[domains]]` line.
    pub domains: Vec<Range<usize>>,
}

/// What a top-level table header names.
#[derive(Debug, PartialEq, Eq)]
enum Header {
    /// `[[domains]]`: a new domain section.
    Domain,
    /// `[domains.x]` or `[[domains.x]]`: part of the current domain.
    DomainPart,
    /// `[domains]`, or a header we do not take apart: read the whole file.
    Unsure,
    /// Any other table.
    Other,
}

/// Cuts `text` into sections; `None` when the file should be read whole.
pub(super) fn split(text: &str) -> Option<Sections<'_>> {
    let mut domains: Vec<Range<usize>> = Vec::new();
    let mut current: Option<usize> = None;
    let mut depth = 0usize;
    let mut line_start = 0usize;
    let mut at_line_start = true;
    let mut lexer = Source::new(text).lex();
    while let Some(token) = lexer.next() {
        let span = token.span();
        match token.kind() {
            TokenKind::Newline => {
                line_start = span.end();
                at_line_start = true;
                continue;
            }
            TokenKind::Whitespace => continue,
            TokenKind::LeftSquareBracket if depth == 0 && at_line_start => {
                let (header, end_of_line) = header(text, &mut lexer);
                match header {
                    Header::Domain => {
                        if let Some(start) = current.take() {
                            domains.push(start..line_start);
                        }
                        current = Some(line_start);
                    }
                    Header::DomainPart if current.is_some() => {}
                    Header::DomainPart | Header::Unsure => return None,
                    Header::Other => {
                        if let Some(start) = current.take() {
                            domains.push(start..line_start);
                        }
                    }
                }
                line_start = end_of_line;
                at_line_start = true;
                continue;
            }
            TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => depth += 1,
            TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => {
                depth = depth.saturating_sub(1)
            }
            TokenKind::Eof => break,
            _ => {}
        }
        at_line_start = false;
    }
    if let Some(start) = current {
        domains.push(start..text.len());
    }
    let prelude = match domains.last() {
        None => Cow::Borrowed(text),
        // Only domain sections after the first one: the prelude is the start.
        Some(last) if last.end == text.len() && contiguous(&domains) => {
            Cow::Borrowed(&text[..domains[0].start])
        }
        Some(_) => {
            let mut blanked = text.as_bytes().to_vec();
            for range in &domains {
                for byte in &mut blanked[range.clone()] {
                    if *byte != b'\n' {
                        *byte = b' ';
                    }
                }
            }
            // Only ASCII bytes were written, at whole sections.
            Cow::Owned(String::from_utf8(blanked).ok()?)
        }
    };
    Some(Sections { prelude, domains })
}

fn contiguous(ranges: &[Range<usize>]) -> bool {
    ranges.windows(2).all(|w| w[0].end == w[1].start)
}

/// Reads a header after its first `[`, up to and including the end of its
/// line; returns what it names and where the next line starts.
fn header(text: &str, lexer: &mut toml_parser::lexer::Lexer<'_>) -> (Header, usize) {
    let mut brackets = 1;
    let mut keys: Vec<&str> = Vec::new();
    let mut unsure = false;
    let mut end_of_line = text.len();
    for token in lexer.by_ref() {
        let span = token.span();
        let raw = &text[span.start()..span.end()];
        match token.kind() {
            TokenKind::LeftSquareBracket if keys.is_empty() => brackets += 1,
            TokenKind::Atom => keys.push(raw),
            TokenKind::BasicString | TokenKind::LiteralString => {
                let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or("");
                if inner.contains('\\') {
                    unsure = true;
                }
                keys.push(inner);
            }
            TokenKind::Newline => {
                end_of_line = span.end();
                break;
            }
            TokenKind::Eof => break,
            // Dots, closing brackets, whitespace, a comment.
            _ => {}
        }
    }
    // A bare key lexes as one atom with its dots (`domains.mta_sts`).
    let parts: Vec<&str> = keys
        .iter()
        .flat_map(|k| k.split('.'))
        .map(str::trim)
        .collect();
    let header = match (unsure, parts.first()) {
        (true, _) | (_, None) => Header::Unsure,
        (false, Some(&"domains")) => match (brackets, parts.len()) {
            (2, 1) => Header::Domain,
            (_, 1) => Header::Unsure,
            _ => Header::DomainPart,
        },
        (false, Some(_)) => Header::Other,
    };
    (header, end_of_line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_sections_are_cut_at_their_header_lines() {
        let text = "[server]\nhostname = \"a.example\"\n\n[[domains]]\nname = \"x\"\n[[domains.outbound.peers]]\npeer = \"p\"\n[[domains]] # two\nname = \"y\"\n[tls]\nkey = \"[[domains]]\"\n";
        let sections = split(text).expect("plain file");
        let cut: Vec<&str> = sections.domains.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(
            cut,
            [
                "[[domains]]\nname = \"x\"\n[[domains.outbound.peers]]\npeer = \"p\"\n",
                "[[domains]] # two\nname = \"y\"\n",
            ]
        );
        assert_eq!(sections.prelude.len(), text.len());
        assert!(sections.prelude.ends_with("[tls]\nkey = \"[[domains]]\"\n"));
        assert!(!sections.prelude.contains("name = \"x\""));
        assert_eq!(sections.prelude.lines().count(), text.lines().count());
    }

    #[test]
    fn domains_at_the_end_leave_the_start_as_prelude() {
        let text = "[server]\n[[domains]]\nname = \"x\"\n[[domains]]\nname = \"y\"\n";
        let sections = split(text).expect("plain file");
        assert_eq!(sections.prelude, "[server]\n");
        assert_eq!(sections.domains, [9..32, 32..text.len()]);
    }

    #[test]
    fn brackets_inside_values_and_strings_are_not_headers() {
        let text = "[[domains]]\nname = \"x\"\noutbound.peers = [\n[\"not\"],\n{ peer = \"]\" },\n]\nnote = '''\n[[domains]]\n'''\n";
        let sections = split(text).expect("plain file");
        assert_eq!(sections.domains, vec![0..text.len()]);
    }

    #[test]
    fn unusual_shapes_are_read_whole() {
        for text in [
            "[domains]\n",
            "[tls]\n[domains.mta_sts]\n",
            "[[\"dom\\u0061ins\"]]\n",
        ] {
            assert!(split(text).is_none(), "{text}");
        }
    }
}
