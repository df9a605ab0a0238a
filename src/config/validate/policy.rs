//! `[defaults]` and `[[domains]]` peers: the TLS peer policy snapshot,
//! with build errors pointed back at the values that caused them.

use super::*;

/// Each tenant's enabled managed domains, sorted.
pub(super) fn tenant_domains(
    policy: &crate::policy::PolicySnapshot,
) -> std::collections::HashMap<String, Arc<[String]>> {
    // Grouped by reference first: a string is made once per tenant and
    // once per domain.
    let mut by_tenant: HashMap<&str, Vec<&str>> = HashMap::new();
    for domain in policy.domains().iter().filter(|d| d.enabled) {
        (by_tenant.entry(domain.tenant.as_str()).or_default()).push(domain.name.as_str());
    }
    by_tenant
        .into_iter()
        .map(|(tenant, mut domains)| {
            domains.sort_unstable();
            let domains: Vec<String> = domains.into_iter().map(str::to_string).collect();
            (tenant.to_string(), Arc::from(domains))
        })
        .collect()
}

/// The managed domains checked so far, one partition per file, and what
/// their errors and warnings need: a load checks each file's domains as
/// soon as it is parsed, while the next files are still being parsed.
pub(super) struct DomainParts {
    defaults: Defaults,
    default_spans: [Option<Range<usize>>; 2],
    builder: SnapshotBuilder,
    /// The domains of the partition being made.
    part: Vec<ManagedDomain>,
    /// One per domain kept, in the order of all partitions.
    spans: Vec<DomainSpans>,
}

impl DomainParts {
    /// The domains checked since the last end are the next partition.
    pub(super) fn end_part(&mut self) {
        let mut part = std::mem::take(&mut self.part);
        // A file read in sections grew it one domain at a time.
        part.shrink_to_fit();
        self.builder.push_part(part);
    }
}

/// Positions of the values a policy build error may point back to.
struct DomainSpans {
    name: Range<usize>,
    outbound: DirectionSpans,
    inbound: DirectionSpans,
}

#[derive(Default)]
struct DirectionSpans {
    default_level: Option<Range<usize>>,
    /// (peer, level) per entry kept in the model, in model order.
    peers: Vec<(Range<usize>, Range<usize>)>,
}

impl DomainSpans {
    fn direction(&self, direction: Direction) -> &DirectionSpans {
        match direction {
            Direction::Outbound => &self.outbound,
            Direction::Inbound => &self.inbound,
        }
    }
}

impl Validator<'_> {
    /// A rule and the span of its level; `None` after recording errors.
    pub(super) fn rule(&mut self, raw: &RawRule) -> Option<(PolicyRule, Range<usize>)> {
        let level = self.word(&raw.level);
        let min_tls = match &raw.min_tls {
            Some(m) => self.word(m),
            None => Some(MinTlsVersion::Any),
        };
        Some((PolicyRule::new(level?, min_tls?), raw.level.span()))
    }

    /// `[defaults]`: the global rules every managed domain's partition is
    /// checked against; read before any domain.
    pub(super) fn policy_defaults(&mut self, raw: &RawConfig, expected: usize) -> DomainParts {
        let mut parts = DomainParts {
            defaults: Defaults::default(),
            default_spans: [None, None],
            builder: SnapshotBuilder::with_capacity(expected),
            part: Vec::new(),
            spans: Vec::with_capacity(expected),
        };
        for (direction, rule) in [
            (Direction::Outbound, &raw.defaults.outbound),
            (Direction::Inbound, &raw.defaults.inbound),
        ] {
            if let Some((rule, span)) = rule.as_ref().and_then(|r| self.rule(r)) {
                match direction {
                    Direction::Outbound => parts.defaults.outbound = rule,
                    Direction::Inbound => parts.defaults.inbound = rule,
                }
                parts.default_spans[direction_slot(direction)] = Some(span);
            }
        }
        parts
    }

    /// Checks `domains` into the partition being made (one per file: the
    /// main file's, then each tenant file's).
    pub(super) fn policy_domains(
        &mut self,
        parts: &mut DomainParts,
        domains: &[Spanned<RawDomain>],
    ) {
        let first = parts.part.len();
        let first_span = parts.spans.len();
        parts.part.reserve(domains.len());
        for raw_domain in domains {
            if let Some((domain, domain_spans)) = self.domain(raw_domain.get_ref()) {
                parts.part.push(domain);
                parts.spans.push(domain_spans);
            }
        }
        self.weak_sender_domain_peers(
            &parts.defaults,
            parts.part[first..].iter(),
            &parts.spans[first_span..],
        );
    }

    /// The policy snapshot of every partition checked.
    pub(super) fn policy(&mut self, parts: DomainParts) -> Option<PolicySnapshot> {
        let DomainParts {
            defaults,
            default_spans,
            builder,
            part,
            spans,
        } = parts;
        debug_assert!(part.is_empty(), "a partition was not ended");
        match builder.finish(defaults) {
            Ok(snapshot) => Some(snapshot),
            Err(build_errors) => {
                for e in build_errors {
                    self.build_error(e, &spans, &default_spans);
                }
                None
            }
        }
    }

    /// Warns about every enabled inbound entry for a sender domain (exact or
    /// wildcard) whose rule is weaker than its domain's inbound default: a
    /// lower level or a lower minimum TLS version. The `MAIL FROM` domain is
    /// a claim, so such an entry lets anyone claiming it skip the default.
    fn weak_sender_domain_peers<'d>(
        &mut self,
        defaults: &Defaults,
        domains: impl Iterator<Item = &'d ManagedDomain>,
        spans: &[DomainSpans],
    ) {
        for (domain, spans) in domains.zip(spans) {
            let default = domain.inbound.default.unwrap_or(defaults.inbound);
            for (entry, (peer_span, _)) in domain.inbound.peers.iter().zip(&spans.inbound.peers) {
                let weaker =
                    entry.rule.level < default.level || entry.rule.min_tls < default.min_tls;
                if entry.enabled && !entry.matcher.is_address() && weaker {
                    self.warnings.push(ConfigWarning {
                        file: self.source_of(peer_span.start).name.clone(),
                        location: self.location(peer_span),
                        kind: ConfigWarningKind::WeakSenderDomainPeer {
                            domain: domain.name.clone(),
                            peer: entry.matcher.clone(),
                            entry: entry.rule,
                            default,
                        },
                    });
                }
            }
        }
    }

    fn domain(&mut self, raw: &RawDomain) -> Option<(ManagedDomain, DomainSpans)> {
        let name = raw.name.get_ref().parse::<DomainName>().map_err(|reason| {
            self.error(
                &raw.name.span(),
                Kind::BadDomain {
                    given: raw.name.get_ref().clone(),
                    reason,
                },
            )
        });
        if raw.tenant.get_ref().trim().is_empty() {
            self.error(
                &raw.tenant.span(),
                Kind::Empty {
                    key: "domains.tenant",
                },
            );
        }
        let (outbound, outbound_spans) = self.direction(&raw.outbound, Direction::Outbound);
        let (inbound, inbound_spans) = self.direction(&raw.inbound, Direction::Inbound);
        let domain = ManagedDomain {
            name: name.ok()?,
            tenant: self.tenant_name(raw.tenant.get_ref()),
            enabled: raw.enabled.unwrap_or(true),
            outbound,
            inbound,
        };
        let spans = DomainSpans {
            name: raw.name.span(),
            outbound: outbound_spans,
            inbound: inbound_spans,
        };
        Some((domain, spans))
    }

    fn direction(
        &mut self,
        raw: &RawDirection,
        direction: Direction,
    ) -> (DirectionPolicy, DirectionSpans) {
        // Exactly as many entries as written: a growing vector's spare
        // room (4 entries for 1 or 2) was 16 MB of 100,000 domains.
        let mut policy = DirectionPolicy {
            default: None,
            peers: Vec::with_capacity(raw.peers.len()),
        };
        let mut spans = DirectionSpans {
            default_level: None,
            peers: Vec::with_capacity(raw.peers.len()),
        };
        if let Some((rule, span)) = raw.default.as_ref().and_then(|r| self.rule(r)) {
            policy.default = Some(rule);
            spans.default_level = Some(span);
        }
        for peer in &raw.peers {
            let matcher = PeerMatcher::parse_shared(peer.peer.get_ref(), &mut self.peer_names)
                .map_err(|reason| {
                    self.error(
                        &peer.peer.span(),
                        Kind::BadPeer {
                            given: peer.peer.get_ref().clone(),
                            direction,
                            reason,
                        },
                    )
                });
            let level = self.word(&peer.level);
            let min_tls = match &peer.min_tls {
                Some(m) => self.word(m),
                None => Some(MinTlsVersion::Any),
            };
            if let (Ok(matcher), Some(level), Some(min_tls)) = (matcher, level, min_tls) {
                policy.peers.push(PeerEntry {
                    matcher,
                    rule: PolicyRule::new(level, min_tls),
                    enabled: peer.enabled.unwrap_or(true),
                });
                spans.peers.push((peer.peer.span(), peer.level.span()));
            }
        }
        (policy, spans)
    }

    fn build_error(
        &mut self,
        e: BuildError,
        spans: &[DomainSpans],
        default_spans: &[Option<Range<usize>>; 2],
    ) {
        let (span, kind) = match e {
            BuildError::DuplicateDomain {
                name,
                first,
                second,
            } => {
                let (first_file, first_line) =
                    self.first_at(&spans[first].name, &spans[second].name);
                (
                    spans[second].name.clone(),
                    Kind::DuplicateDomain {
                        name: name.to_string(),
                        first_line,
                        first_file,
                    },
                )
            }
            BuildError::DuplicatePeer {
                domain,
                domain_name,
                direction,
                peer,
                first,
                second,
            } => {
                let peers = &spans[domain].direction(direction).peers;
                (
                    peers[second].0.clone(),
                    Kind::DuplicatePeer {
                        domain: domain_name.to_string(),
                        direction,
                        peer,
                        first_line: self.line(&peers[first].0),
                    },
                )
            }
            BuildError::LevelNotAllowed {
                domain,
                direction,
                peer,
                rule,
            } => {
                let span = match (domain, peer) {
                    (None, _) => default_spans[direction_slot(direction)].clone(),
                    (Some(d), None) => spans[d].direction(direction).default_level.clone(),
                    (Some(d), Some(p)) => Some(spans[d].direction(direction).peers[p].1.clone()),
                };
                (
                    span.unwrap_or(0..0),
                    Kind::LevelNotAllowed {
                        level: rule.level,
                        direction,
                    },
                )
            }
            BuildError::AddressPeerOutbound {
                domain,
                peer_index,
                peer,
            } => (
                spans[domain].outbound.peers[peer_index].0.clone(),
                Kind::AddressPeerOutbound { peer },
            ),
        };
        self.error(&span, kind);
    }
}

fn direction_slot(direction: Direction) -> usize {
    match direction {
        Direction::Outbound => 0,
        Direction::Inbound => 1,
    }
}
