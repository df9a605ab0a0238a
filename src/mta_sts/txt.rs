//! Policy discovery: the `_mta-sts.<domain>` TXT record (RFC 8461 section
//! 3.1) and the trait through which the DNS module supplies it.
//!
//! ```text
//! sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
//! sts-field-delim = *WSP ";" *WSP
//! sts-version     = %s"v=STSv1"
//! sts-id          = %s"id=" 1*32(ALPHA / DIGIT)
//! sts-extension   = sts-ext-name "=" sts-ext-value
//! ```
//!
//! Records that do not begin with `v=STSv1` are discarded; if the number of
//! remaining records is not exactly one, or the one left is invalid, the
//! domain has no available policy (section 3.1). The policy is never looked
//! up on a parent domain.
//!
//! A repeated `id` field: the first counts and the later ones are ignored,
//! value unchecked, as section 3.2 rules for repeated non-repeated fields
//! ("all entries except for the first SHALL be ignored"; that sentence
//! covers "TXT records and policy files" alike).

use futures_util::future::BoxFuture;

/// A valid `_mta-sts` TXT record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsTxtRecord {
    /// The policy id (1 to 32 letters or digits); a change means a new policy.
    pub id: String,
}

/// Why the TXT records of `_mta-sts.<domain>` give no policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxtError {
    #[error("no TXT record starts with v=STSv1")]
    NoStsRecord,
    #[error("{count} TXT records start with v=STSv1 (exactly one is allowed)")]
    Multiple { count: usize },
    #[error("invalid field {field:?} at byte {offset}: {why}")]
    BadField {
        field: String,
        offset: usize,
        why: &'static str,
    },
    #[error("the record has no id field")]
    MissingId,
}

/// Whether a record begins with the version tag: `v=STSv1` followed by the
/// end, a `;` or whitespace (so `v=STSv10` is not one).
fn starts_with_version(record: &str) -> bool {
    match record.strip_prefix("v=STSv1") {
        Some(rest) => rest.is_empty() || rest.starts_with(';') || rest.starts_with([' ', '\t']),
        None => false,
    }
}

/// Picks the one STS record among all TXT records of the name and parses it.
/// Each element is one record with its character-strings concatenated.
pub fn parse_txt_records<S: AsRef<str>>(records: &[S]) -> Result<StsTxtRecord, TxtError> {
    let sts: Vec<&str> = records
        .iter()
        .map(|r| r.as_ref())
        .filter(|r| starts_with_version(r))
        .collect();
    match sts.as_slice() {
        [] => Err(TxtError::NoStsRecord),
        [one] => parse_txt_record(one),
        many => Err(TxtError::Multiple { count: many.len() }),
    }
}

/// Parses one record that begins with `v=STSv1`.
pub(crate) fn parse_txt_record(record: &str) -> Result<StsTxtRecord, TxtError> {
    let mut id: Option<String> = None;
    let mut offset = 0;
    for (index, raw) in record.split(';').enumerate() {
        let field_offset = offset;
        offset += raw.len() + 1;
        let field = raw.trim_matches([' ', '\t']);
        let bad = |why: &'static str| TxtError::BadField {
            field: field.chars().take(64).collect(),
            offset: field_offset,
            why,
        };
        if index == 0 {
            if field != "v=STSv1" {
                return Err(bad("the record must begin with v=STSv1"));
            }
            continue;
        }
        if field.is_empty() {
            // Only a trailing delimiter may leave an empty field.
            if field_offset + raw.len() == record.len() {
                continue;
            }
            return Err(bad("empty field"));
        }
        let Some((name, value)) = field.split_once('=') else {
            return Err(bad("expected name=value"));
        };
        if name == "id" && id.is_some() {
            // Section 3.2: a repeated field after the first is ignored.
            continue;
        }
        if name == "id" {
            if value.is_empty()
                || value.len() > 32
                || !value.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(bad("id must be 1 to 32 letters or digits"));
            }
            id = Some(value.to_string());
        } else {
            // sts-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
            let name_ok = name.len() <= 32
                && name
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            // sts-ext-value = 1*(%x21-3A / %x3C / %x3E-7E)
            let value_ok = !value.is_empty()
                && value
                    .bytes()
                    .all(|b| matches!(b, 0x21..=0x3A | 0x3C | 0x3E..=0x7E));
            if !name_ok || !value_ok {
                return Err(bad("invalid extension field"));
            }
        }
    }
    id.map(|id| StsTxtRecord { id }).ok_or(TxtError::MissingId)
}

/// Joins the character-strings of one TXT record, as RFC 8461 section 3.1
/// asks. Bytes that are not UTF-8 become U+FFFD, which no valid record
/// contains, so such a record is then refused by the parser.
pub fn join_txt_strings<S: AsRef<[u8]>>(strings: &[S]) -> String {
    let bytes: Vec<u8> = strings.iter().flat_map(|s| s.as_ref().to_vec()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The DNS name queried for a domain's policy record, fully qualified.
pub(crate) fn txt_name(domain: &str) -> String {
    format!("_mta-sts.{domain}.")
}

/// Why a TXT lookup returned no records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxtLookupError {
    /// NXDOMAIN or NODATA: the name has no TXT records.
    #[error("{name}: no TXT records (NXDOMAIN or NODATA)")]
    NoRecords { name: String },
    /// SERVFAIL, timeout, network error...: nothing is known.
    #[error("{name}: TXT lookup failed: {reason}")]
    Failed { name: String, reason: String },
}

/// Where the `_mta-sts` TXT records come from. The DNS module implements this
/// for its resolver; tests use an in-memory double.
///
/// `name` is fully qualified with a trailing dot (`_mta-sts.example.com.`);
/// it must be queried as is (no search domains). The answer is one `String`
/// per TXT record, that record's character-strings concatenated (see
/// [`join_txt_strings`]). CNAMEs are followed by the resolver. DNSSEC is not
/// required by MTA-STS.
pub trait StsTxtSource: Send + Sync {
    fn lookup_txt<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, TxtLookupError>>;
}

/// The real TXT source: sealpost's DNSSEC-aware resolver. RFC 8461 does not
/// require DNSSEC, so a secure and an insecure answer count alike; a bogus
/// answer is a failure, never "no records", so a cached policy stays in
/// force (section 5.1).
impl StsTxtSource for crate::dns::Resolver {
    fn lookup_txt<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, TxtLookupError>> {
        Box::pin(async move {
            use crate::dns::Lookup;
            match self.txt(name).await {
                Lookup::Records { records, .. } => Ok(records),
                Lookup::NoData { .. } | Lookup::NxDomain { .. } => Err(TxtLookupError::NoRecords {
                    name: name.to_owned(),
                }),
                Lookup::Failed(failure) => Err(TxtLookupError::Failed {
                    name: name.to_owned(),
                    reason: failure.to_string(),
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_records() {
        let table: &[(&[&str], &str)] = &[
            (&["v=STSv1; id=20160831085700Z;"], "20160831085700Z"),
            (&["v=STSv1;id=abc"], "abc"),
            (&["v=STSv1 ;\tid=abc ; "], "abc"),
            (&["v=STSv1; id=ABCdef123; ext_1.x=some-value;"], "ABCdef123"),
            (&["v=STSv1; ext=1; id=a"], "a"),
            // A repeated id: the first counts, the rest are ignored unchecked.
            (&["v=STSv1; id=a; id=b"], "a"),
            (&["v=STSv1; id=first; ext=1; id=not-valid!; id="], "first"),
            (&["v=spf1 -all", "v=STSv1; id=x1", "other"], "x1"),
            (
                &["v=STSv1; id=12345678901234567890123456789012"],
                "12345678901234567890123456789012",
            ),
        ];
        for (records, id) in table {
            let got = parse_txt_records(records).unwrap_or_else(|e| panic!("{records:?}: {e}"));
            assert_eq!(got.id, *id, "{records:?}");
        }
    }

    #[test]
    fn invalid_records() {
        type Check = fn(&TxtError) -> bool;
        let table: &[(&[&str], Check)] = &[
            (&[], |e| *e == TxtError::NoStsRecord),
            (&["v=spf1 -all"], |e| *e == TxtError::NoStsRecord),
            (&["v=STSv10; id=a"], |e| *e == TxtError::NoStsRecord),
            (&["V=STSv1; id=a"], |e| *e == TxtError::NoStsRecord),
            (&[" v=STSv1; id=a"], |e| *e == TxtError::NoStsRecord),
            (&["v=STSv1; id=a", "v=STSv1; id=b"], |e| {
                *e == TxtError::Multiple { count: 2 }
            }),
            (&["v=STSv1"], |e| *e == TxtError::MissingId),
            (&["v=STSv1;"], |e| *e == TxtError::MissingId),
            // The first id counts even when a valid one follows.
            (&["v=STSv1; id=a-b; id=b"], |e| {
                matches!(e, TxtError::BadField { .. })
            }),
            (&["v=STSv1; id="], |e| {
                matches!(e, TxtError::BadField { .. })
            }),
            (&["v=STSv1; id=123456789012345678901234567890123"], |e| {
                matches!(e, TxtError::BadField { .. })
            }),
            (&["v=STSv1; id=abc-def"], |e| {
                matches!(e, TxtError::BadField { .. })
            }),
            (&["v=STSv1; id=a b"], |e| {
                matches!(e, TxtError::BadField { .. })
            }),
            (&["v=STSv1;; id=a"], |e| {
                matches!(e, TxtError::BadField { offset: 8, .. })
            }),
            (&["v=STSv1; id=a; junk"], |e| {
                matches!(e, TxtError::BadField { .. })
            }),
            (&["v=STSv1; id=a; -x=1"], |e| {
                matches!(e, TxtError::BadField { .. })
            }),
            (&["v=STSv1; id=a; x=a=b"], |e| {
                matches!(e, TxtError::BadField { .. })
            }),
            (&["v=STSv1; id=é"], |e| {
                matches!(e, TxtError::BadField { .. })
            }),
        ];
        for (records, check) in table {
            match parse_txt_records(records) {
                Err(e) => assert!(check(&e), "{records:?}: unexpected {e:?}"),
                Ok(r) => panic!("{records:?}: accepted as {r:?}"),
            }
        }
    }

    #[test]
    fn strings_of_one_record_are_joined() {
        let joined = join_txt_strings(&[b"v=STSv1; id=ab".as_slice(), b"c123;"]);
        assert_eq!(
            parse_txt_records(&[joined]).map(|r| r.id),
            Ok("abc123".to_string())
        );
        let bad = join_txt_strings(&[b"v=STSv1; id=a\xff".as_slice()]);
        assert!(parse_txt_records(&[bad]).is_err());
    }
}
