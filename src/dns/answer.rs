//! What a lookup returns: records, NODATA or NXDOMAIN with their DNSSEC
//! status, or a failure. Plain data, independent of hickory's types, so the
//! DANE decision functions can be table-tested without DNS.

use std::fmt;
use std::net::IpAddr;

/// The DNSSEC validation state of an answer (RFC 4033 section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnssecStatus {
    /// A chain of signatures from the trust anchor covers the answer.
    Secure,
    /// The answer lies in or below a zone proven unsigned.
    Insecure,
    /// Signatures were expected but failed to validate. A bogus answer is
    /// never used: lookups report it as [`LookupFailure::Bogus`].
    Bogus,
}

impl DnssecStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DnssecStatus::Secure => "secure",
            DnssecStatus::Insecure => "insecure",
            DnssecStatus::Bogus => "bogus",
        }
    }

    /// The weaker of two statuses: an answer built from several RRsets
    /// (a CNAME chain, A plus AAAA) is only as secure as its weakest part.
    pub(crate) fn weakest(self, other: DnssecStatus) -> DnssecStatus {
        use DnssecStatus::*;
        match (self, other) {
            (Bogus, _) | (_, Bogus) => Bogus,
            (Insecure, _) | (_, Insecure) => Insecure,
            (Secure, Secure) => Secure,
        }
    }
}

impl fmt::Display for DnssecStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a lookup produced no usable answer. Each of these is "lookup
/// failed", never "no records" (RFC 7672 section 2.1.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LookupFailure {
    /// The server answered SERVFAIL.
    ServFail,
    /// No answer within the configured timeout and attempts.
    Timeout,
    /// DNSSEC validation failed (bad signature, missing proof, broken chain).
    Bogus,
    /// The server refused the query.
    Refused,
    /// Another response code or a transport error.
    Other(String),
}

impl fmt::Display for LookupFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupFailure::ServFail => f.write_str("SERVFAIL"),
            LookupFailure::Timeout => f.write_str("timeout"),
            LookupFailure::Bogus => f.write_str("DNSSEC bogus"),
            LookupFailure::Refused => f.write_str("REFUSED"),
            LookupFailure::Other(detail) => write!(f, "lookup error: {detail}"),
        }
    }
}

/// The result of one lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    /// At least one record of the asked type (after following CNAMEs).
    Records {
        records: Vec<T>,
        dnssec: DnssecStatus,
    },
    /// The name exists but has no record of this type.
    NoData { dnssec: DnssecStatus },
    /// The name does not exist.
    NxDomain { dnssec: DnssecStatus },
    /// No usable answer.
    Failed(LookupFailure),
}

impl<T> Lookup<T> {
    /// The DNSSEC status, `None` for failures other than bogus.
    pub fn dnssec(&self) -> Option<DnssecStatus> {
        match self {
            Lookup::Records { dnssec, .. }
            | Lookup::NoData { dnssec }
            | Lookup::NxDomain { dnssec } => Some(*dnssec),
            Lookup::Failed(LookupFailure::Bogus) => Some(DnssecStatus::Bogus),
            Lookup::Failed(_) => None,
        }
    }

    /// The records, empty unless this is [`Lookup::Records`].
    pub fn records(&self) -> &[T] {
        match self {
            Lookup::Records { records, .. } => records,
            _ => &[],
        }
    }

    /// Whether this is a validated denial (NODATA or NXDOMAIN, secure).
    pub fn is_secure_denial(&self) -> bool {
        matches!(
            self,
            Lookup::NoData {
                dnssec: DnssecStatus::Secure
            } | Lookup::NxDomain {
                dnssec: DnssecStatus::Secure
            }
        )
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Lookup<U> {
        match self {
            Lookup::Records { records, dnssec } => Lookup::Records {
                records: records.into_iter().map(f).collect(),
                dnssec,
            },
            Lookup::NoData { dnssec } => Lookup::NoData { dnssec },
            Lookup::NxDomain { dnssec } => Lookup::NxDomain { dnssec },
            Lookup::Failed(failure) => Lookup::Failed(failure),
        }
    }

    /// Merge A and AAAA as far as they resolved, for delivery that does
    /// not need DANE: when one family failed (SERVFAIL, timeout, ...) and
    /// the other gave records, those records. A failure stays a failure
    /// when the other family has no records to offer (NODATA does not
    /// prove there is no address), and a bogus half still makes the whole
    /// bogus (a validation failure may be an attack).
    pub(crate) fn merge_resolved(self, other: Lookup<T>) -> Lookup<T> {
        use Lookup::*;
        match (self, other) {
            (Failed(f), records @ Records { .. }) | (records @ Records { .. }, Failed(f))
                if f != LookupFailure::Bogus =>
            {
                records
            }
            (a, b) => a.merge(b),
        }
    }

    /// Merge two lookups of the same name (A and AAAA): records of both,
    /// the weaker DNSSEC status, and a failure of either is a failure (a
    /// bogus half makes the whole bogus; the safe direction for DANE,
    /// RFC 7672 section 2.2).
    pub fn merge(self, other: Lookup<T>) -> Lookup<T> {
        use Lookup::*;
        match (self, other) {
            (Failed(LookupFailure::Bogus), _) | (_, Failed(LookupFailure::Bogus)) => {
                Failed(LookupFailure::Bogus)
            }
            (Failed(failure), _) | (_, Failed(failure)) => Failed(failure),
            (
                Records {
                    mut records,
                    dnssec,
                },
                Records {
                    records: more,
                    dnssec: d2,
                },
            ) => {
                records.extend(more);
                Records {
                    records,
                    dnssec: dnssec.weakest(d2),
                }
            }
            (Records { records, dnssec }, NoData { dnssec: d2 } | NxDomain { dnssec: d2 })
            | (NoData { dnssec: d2 } | NxDomain { dnssec: d2 }, Records { records, dnssec }) => {
                Records {
                    records,
                    dnssec: dnssec.weakest(d2),
                }
            }
            (NxDomain { dnssec }, NoData { dnssec: d2 } | NxDomain { dnssec: d2 })
            | (NoData { dnssec: d2 }, NxDomain { dnssec }) => NxDomain {
                dnssec: dnssec.weakest(d2),
            },
            (NoData { dnssec }, NoData { dnssec: d2 }) => NoData {
                dnssec: dnssec.weakest(d2),
            },
        }
    }
}

/// One MX record (RFC 5321 section 5.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MxHost {
    pub preference: u16,
    /// Lower case, without the trailing dot.
    pub exchange: String,
}

/// Where mail for a domain goes, per RFC 5321 section 5.1 and RFC 7505.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxLookup {
    /// MX records, sorted by preference (lowest first). `dnssec` is the
    /// status of the MX RRset.
    Hosts {
        hosts: Vec<MxHost>,
        dnssec: DnssecStatus,
    },
    /// No MX records but the domain has address records: the domain is its
    /// own mail host with preference 0 (RFC 5321 section 5.1). `dnssec` is
    /// the status of the MX denial.
    Implicit { host: MxHost, dnssec: DnssecStatus },
    /// A null MX (`0 .`): the domain accepts no mail (RFC 7505 section 3).
    /// A permanent failure.
    NullMx { dnssec: DnssecStatus },
    /// The domain does not exist, or has neither MX nor address records.
    /// A permanent failure (RFC 5321 section 5.1).
    NoMailDomain {
        nxdomain: bool,
        dnssec: DnssecStatus,
    },
    /// The MX lookup (or, with no MX, the address lookup) failed.
    Failed(LookupFailure),
}

impl MxLookup {
    /// The DNSSEC status of the MX answer, `None` for non-bogus failures.
    pub fn dnssec(&self) -> Option<DnssecStatus> {
        match self {
            MxLookup::Hosts { dnssec, .. }
            | MxLookup::Implicit { dnssec, .. }
            | MxLookup::NullMx { dnssec }
            | MxLookup::NoMailDomain { dnssec, .. } => Some(*dnssec),
            MxLookup::Failed(LookupFailure::Bogus) => Some(DnssecStatus::Bogus),
            MxLookup::Failed(_) => None,
        }
    }

    /// The hosts to try in order (empty for failures and null MX).
    pub fn hosts(&self) -> Vec<MxHost> {
        match self {
            MxLookup::Hosts { hosts, .. } => hosts.clone(),
            MxLookup::Implicit { host, .. } => vec![host.clone()],
            _ => Vec::new(),
        }
    }
}

/// One TLSA record (RFC 6698 section 2.1), fields kept as numbers so that
/// unknown values stay visible (they make the record unusable, RFC 7672
/// section 3.1.3, see `dane::tlsa`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsaRecord {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

impl fmt::Display for TlsaRecord {
    /// Presentation format, `3 1 1 a1b2...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} ", self.usage, self.selector, self.matching)?;
        for byte in &self.data {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// The TLSA RRset of one host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsaLookup {
    /// The TLSA base domain: the host name the records were sought for,
    /// without the `_25._tcp.` prefix (RFC 7672 section 2.2.3). CNAMEs at
    /// the TLSA owner name are followed but do not change it.
    pub base_domain: String,
    /// The name queried, e.g. `_25._tcp.mx.example.com`.
    pub tlsa_name: String,
    pub lookup: Lookup<TlsaRecord>,
}

/// Addresses of a host after CNAME expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressLookup {
    /// The name asked for.
    pub host: String,
    /// The final target after following CNAMEs (equal to `host` when
    /// there were none); RFC 7672 section 2.2.3 seeks TLSA records here
    /// first when the expansion was secure.
    pub canonical: String,
    /// A and AAAA merged strictly: a failure of either family is a
    /// failure. What DANE uses (RFC 7672 section 2.2).
    pub lookup: Lookup<IpAddr>,
    /// A and AAAA as far as they resolved ([`Lookup::merge_resolved`]):
    /// what delivery without DANE uses. Equal to `lookup` unless one
    /// family failed while the other gave records.
    pub resolved: Lookup<IpAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use DnssecStatus::*;

    #[test]
    fn weakest_status_wins() {
        let table = [
            (Secure, Secure, Secure),
            (Secure, Insecure, Insecure),
            (Insecure, Secure, Insecure),
            (Secure, Bogus, Bogus),
            (Bogus, Insecure, Bogus),
        ];
        for (a, b, want) in table {
            assert_eq!(a.weakest(b), want, "{a} + {b}");
        }
    }

    #[test]
    fn merging_address_families() {
        let v4: Lookup<u8> = Lookup::Records {
            records: vec![4],
            dnssec: Secure,
        };
        let v6_none: Lookup<u8> = Lookup::NoData { dnssec: Insecure };
        assert_eq!(
            v4.clone().merge(v6_none),
            Lookup::Records {
                records: vec![4],
                dnssec: Insecure
            }
        );
        let failed: Lookup<u8> = Lookup::Failed(LookupFailure::ServFail);
        assert_eq!(
            v4.clone().merge(failed),
            Lookup::Failed(LookupFailure::ServFail)
        );
        let bogus: Lookup<u8> = Lookup::Failed(LookupFailure::Bogus);
        assert_eq!(
            Lookup::Failed(LookupFailure::Timeout).merge(bogus.clone()),
            Lookup::Failed(LookupFailure::Bogus)
        );
        // As far as they resolved: the family that answered counts.
        let servfail: Lookup<u8> = Lookup::Failed(LookupFailure::ServFail);
        let timeout: Lookup<u8> = Lookup::Failed(LookupFailure::Timeout);
        let table = [
            (v4.clone(), servfail.clone(), v4.clone()),
            (timeout.clone(), v4.clone(), v4.clone()),
            (v4.clone(), bogus.clone(), bogus.clone()),
            (
                Lookup::NoData { dnssec: Secure },
                servfail.clone(),
                servfail.clone(),
            ),
            (servfail.clone(), timeout.clone(), servfail.clone()),
            (
                v4.clone(),
                Lookup::NoData { dnssec: Insecure },
                Lookup::Records {
                    records: vec![4],
                    dnssec: Insecure,
                },
            ),
        ];
        for (a, b, want) in table {
            assert_eq!(a.clone().merge_resolved(b.clone()), want, "{a:?} + {b:?}");
        }
        let nx: Lookup<u8> = Lookup::NxDomain { dnssec: Secure };
        assert_eq!(
            nx.merge(Lookup::NoData { dnssec: Secure }),
            Lookup::NxDomain { dnssec: Secure }
        );
    }

    #[test]
    fn tlsa_presentation_format() {
        let record = TlsaRecord {
            usage: 3,
            selector: 1,
            matching: 1,
            data: vec![0xab, 0x01],
        };
        assert_eq!(record.to_string(), "3 1 1 ab01");
    }
}
