//! Valid-recipient lists of managed domains (`[[domains]] recipients`).
//!
//! A list is a text file, one entry per line: an address (`local@domain`,
//! its domain the managed domain's) or a bare local part. A `#` at the
//! start of a line or after whitespace starts a comment; blank lines are
//! ignored. Local parts follow RFC 5321 section
//! 4.1.2 (`Dot-string` or `Quoted-string`) and are compared without regard
//! to case. `postmaster` is always a valid recipient, listed or not (RFC
//! 5321 section 4.5.1).
//!
//! The files are read during configuration validation, so a reload re-reads
//! them and a bad line is a configuration error naming the file and line.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::smtp::address::parse_mailbox;
use crate::smtp::Host;

/// The valid local parts of one managed domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientList {
    path: PathBuf,
    /// Lowercased local parts, as written (a quoted one keeps its quotes).
    locals: HashSet<String>,
}

/// One line of a recipients file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BadLine {
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters: where the entry starts.
    pub column: usize,
    pub given: String,
    pub reason: String,
}

impl RecipientList {
    /// Parses a file's text for the managed domain `domain` (lowercase);
    /// every bad line is returned.
    pub(super) fn parse(path: &Path, text: &str, domain: &str) -> Result<Self, Vec<BadLine>> {
        let mut locals = HashSet::new();
        let mut bad = Vec::new();
        for (index, raw_line) in text.lines().enumerate() {
            let entry = without_comment(raw_line).trim();
            if entry.is_empty() {
                continue;
            }
            let column = raw_line[..raw_line.len() - raw_line.trim_start().len()]
                .chars()
                .count()
                + 1;
            match local_part_of(entry, domain) {
                Ok(local) => {
                    locals.insert(local);
                }
                Err(reason) => bad.push(BadLine {
                    line: index + 1,
                    column,
                    given: entry.to_string(),
                    reason,
                }),
            }
        }
        if bad.is_empty() {
            Ok(RecipientList {
                path: path.to_owned(),
                locals,
            })
        } else {
            Err(bad)
        }
    }

    /// The file the list was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many distinct local parts are listed.
    pub fn len(&self) -> usize {
        self.locals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.locals.is_empty()
    }

    /// Whether `local_part` (as the RCPT command gave it) is a valid
    /// recipient: listed (any case), or `postmaster` (RFC 5321 4.5.1).
    pub fn accepts(&self, local_part: &str) -> bool {
        local_part.eq_ignore_ascii_case("postmaster")
            || self.locals.contains(&local_part.to_lowercase())
    }
}

/// The line up to a `#` that starts it or follows whitespace (`#` is
/// also a valid character inside a local part, as in `sales#eu`).
fn without_comment(line: &str) -> &str {
    let mut previous_blank = true;
    for (i, c) in line.char_indices() {
        if c == '#' && previous_blank {
            return &line[..i];
        }
        previous_blank = c.is_whitespace();
    }
    line
}

/// The lowercased local part of one entry, checked with the SMTP address
/// grammar; an address must belong to `domain`.
fn local_part_of(entry: &str, domain: &str) -> Result<String, String> {
    // A quoted local part may hold `@`; the address parser knows where it ends.
    let is_address = if entry.starts_with('"') {
        entry.len() < 2 || !entry.ends_with('"')
    } else {
        entry.contains('@')
    };
    let mailbox = if is_address {
        parse_mailbox(entry).map_err(|e| e.to_string())?
    } else {
        parse_mailbox(&format!("{entry}@{domain}")).map_err(|e| e.to_string())?
    };
    match &mailbox.host {
        Host::Domain(d) if d.to_lowercase() == domain => Ok(mailbox.local_part.to_lowercase()),
        other => Err(format!(
            "the address is not in `{domain}` (its domain is `{other}`)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> Result<RecipientList, Vec<BadLine>> {
        RecipientList::parse(Path::new("r.txt"), text, "example.org")
    }

    #[test]
    fn entries_comments_and_case() {
        let list = list(
            "# staff\n\
             alice\n\
             \n\
             Bob@Example.ORG   # with a comment\n\
             \t carol.smith@example.org\n\
             \"odd name\"\n\
             sales#eu # a hash inside a local part is not a comment\n\
             alice\n",
        )
        .expect("valid");
        assert_eq!(list.len(), 5);
        let table = [
            ("alice", true),
            ("ALICE", true),
            ("bob", true),
            ("Carol.Smith", true),
            ("\"odd name\"", true),
            ("\"Odd Name\"", true),
            ("dave", false),
            ("postmaster", true),
            ("PostMaster", true),
            ("carol", false),
            ("SALES#EU", true),
            ("sales", false),
        ];
        for (local, want) in table {
            assert_eq!(list.accepts(local), want, "{local}");
        }
    }

    #[test]
    fn bad_lines_are_all_reported_with_line_and_column() {
        let bad = list("ok\n  a b\nx@other.org\n..dots\nfine@example.org\n@example.org\n")
            .expect_err("bad lines");
        let lines: Vec<(usize, usize)> = bad.iter().map(|b| (b.line, b.column)).collect();
        assert_eq!(lines, vec![(2, 3), (3, 1), (4, 1), (6, 1)]);
        assert!(bad[1].reason.contains("not in `example.org`"), "{bad:?}");
    }

    #[test]
    fn an_empty_file_lists_nobody_but_postmaster() {
        let list = list("# nobody yet\n\n").expect("valid");
        assert!(list.is_empty());
        assert!(list.accepts("postmaster"));
        assert!(!list.accepts("alice"));
    }
}
