//! The receiving side of the node-to-node transfer extension
//! ([`crate::smtp::transfer`]): who may use it (`[cluster] peers`), and
//! the queue messages a transferred message becomes.
//!
//! A peer's connection is served with a session that advertises
//! `XSEALPOST-TRANSFER` and accepts its parameter; any other client never
//! sees the keyword, and its parameter gets `555` from the session (and,
//! should a reload remove a peer mid-session, `550 5.7.1` here). A
//! transferred message skips relay control and the inbound TLS policy:
//! its tenant, destination, accepted policy, REQUIRETLS request, stored
//! MAIL and RCPT parameters and arrival time are the sending node's, so
//! this node enforces the same policy. It gets this node's own
//! `Received:` line above the sending node's. `250` only once durable,
//! like any message: the sending node removes its copy only then.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use sealpost_queue::{
    AcceptedPolicy, Body, MessageId, NewCopy, NewRecipient, NewTransaction, Queue,
};
use tracing::{info, warn};

use super::storage::Storage;
use super::trace::{received_header, Trace};
use super::ConnectionInfo;
use crate::config::Config;
use crate::policy::{MinTlsVersion, SecurityLevel};
use crate::smtp::transfer::{self, MessageRecord, RecipientRecord, KEYWORD};
use crate::smtp::{
    Envelope, ForwardPath, MailParams, RcptParams, Reply, ReversePath, SessionConfig, Verdict,
};

/// The session settings for connections from `[cluster] peers`.
#[derive(Debug, Clone)]
pub struct PeerSessions {
    nets: Vec<IpNet>,
    session: Arc<SessionConfig>,
}

impl PeerSessions {
    /// `None` when there are no peers.
    pub fn new(nets: &[IpNet], base: &SessionConfig) -> Option<PeerSessions> {
        if nets.is_empty() {
            return None;
        }
        let mut session = base.clone();
        session.extensions.push(KEYWORD.to_string());
        session.extra_params.push(KEYWORD.to_string());
        Some(PeerSessions {
            nets: nets.to_vec(),
            session: Arc::new(session),
        })
    }

    /// The session settings for a client at `ip`, if it is a peer.
    pub fn session_for(&self, ip: IpAddr) -> Option<Arc<SessionConfig>> {
        is_in(&self.nets, ip).then(|| self.session.clone())
    }
}

fn is_in(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    nets.iter().any(|n| n.contains(&ip))
}

fn not_a_peer(conn: &ConnectionInfo) -> Verdict {
    info!(conn = conn.id, peer = %conn.peer, "transfer refused: not in [cluster] peers");
    Verdict::Reject(Reply::new(
        550,
        (5, 7, 1),
        "Transfer not permitted from this address",
    ))
}

fn bad_record(conn: &ConnectionInfo, error: &transfer::BadRecord) -> Verdict {
    warn!(conn = conn.id, peer = %conn.peer, %error, "transfer refused: bad record");
    Verdict::Reject(Reply::new(
        501,
        (5, 5, 4),
        format!("Bad {KEYWORD} parameter"),
    ))
}

/// The verdict on a MAIL with the transfer parameter (`None`: not a
/// transfer, or an acceptable one: go on as usual).
pub fn mail_verdict(
    config: &Config,
    conn: &ConnectionInfo,
    params: &MailParams,
) -> Option<Verdict> {
    let record = transfer::find::<MessageRecord>(&params.other)?;
    if !is_in(&config.peers, conn.peer.ip()) {
        return Some(not_a_peer(conn));
    }
    match record {
        Err(e) => Some(bad_record(conn, &e)),
        Ok(r)
            if r.level.parse::<SecurityLevel>().is_err()
                || r.min_tls.parse::<MinTlsVersion>().is_err() =>
        {
            let e = transfer::BadRecord {
                reason: format!("unknown policy {} / {}", r.level, r.min_tls),
            };
            Some(bad_record(conn, &e))
        }
        Ok(_) => None,
    }
}

/// The verdict on a RCPT with the transfer parameter (`None`: not a
/// transfer): a peer's is accepted whatever the recipient, since the
/// sending node already accepted it.
pub fn rcpt_verdict(
    config: &Config,
    conn: &ConnectionInfo,
    params: &RcptParams,
) -> Option<Verdict> {
    let record = transfer::find::<RecipientRecord>(&params.other)?;
    Some(match record {
        _ if !is_in(&config.peers, conn.peer.ip()) => not_a_peer(conn),
        Err(e) => bad_record(conn, &e),
        Ok(_) => Verdict::Accept,
    })
}

/// Whether this message came with the transfer extension.
pub fn is_transfer(envelope: &Envelope) -> bool {
    transfer::present(&envelope.params.other)
}

/// Queues a transferred message (one queue message per destination, as
/// the sending node had them); its tenant and the ids once durable, or
/// the refusal.
pub async fn receive(
    config: &Config,
    queue: &Queue,
    storage: &Storage,
    conn: &ConnectionInfo,
    envelope: &Envelope,
    body: Body,
) -> Result<(String, Vec<MessageId>), Reply> {
    let refuse = |verdict: Verdict| match verdict {
        Verdict::Reject(reply) => reply,
        _ => Reply::new(554, (5, 7, 1), "Transfer refused"),
    };
    if !is_in(&config.peers, conn.peer.ip()) {
        return Err(refuse(not_a_peer(conn)));
    }
    let message = match transfer::find::<MessageRecord>(&envelope.params.other) {
        Some(Ok(m)) => m,
        Some(Err(e)) => return Err(refuse(bad_record(conn, &e))),
        None => return Err(Reply::new(554, (5, 5, 4), "No transfer record")),
    };
    if storage.disk(config, body.len()).is_err() {
        return Err(Reply::new(452, (4, 3, 1), "Insufficient system storage"));
    }
    let copies =
        copies(config, conn, envelope, &message).map_err(|e| refuse(bad_record(conn, &e)))?;
    let ids = match queue.enqueue_transaction(NewTransaction { copies, body }) {
        Ok(durable) => durable.await,
        Err(e) => Err(e),
    };
    let ids = ids.map_err(|e| {
        warn!(conn = conn.id, error = %e, "the queue refused a transferred message");
        Reply::new(451, (4, 3, 0), "Local error in processing; try again later")
    })?;
    info!(
        conn = conn.id,
        peer = %conn.peer,
        origin_id = %message.origin_id,
        tenant = %message.tenant,
        queue_id = ?ids.iter().map(|id| id.to_string()).collect::<Vec<_>>(),
        "transferred message accepted"
    );
    Ok((message.tenant, ids))
}

/// The queue messages of a transferred message: one per destination.
fn copies(
    config: &Config,
    conn: &ConnectionInfo,
    envelope: &Envelope,
    message: &MessageRecord,
) -> Result<Vec<NewCopy>, transfer::BadRecord> {
    let hostname = config.server.hostname.as_str();
    let mut groups: Vec<(String, Vec<NewRecipient>)> = Vec::new();
    for rcpt in &envelope.recipients {
        let record = match transfer::find::<RecipientRecord>(&rcpt.params.other) {
            Some(r) => r?,
            None => {
                return Err(transfer::BadRecord {
                    reason: format!("recipient {} has no record", rcpt.path),
                })
            }
        };
        let address = match &rcpt.path {
            ForwardPath::Postmaster => format!("postmaster@{hostname}"),
            ForwardPath::Mailbox(m) => m.to_string(),
        };
        let recipient = NewRecipient {
            address,
            destination: record.destination.clone(),
            params: record.params,
        };
        match groups.iter_mut().find(|(d, _)| *d == record.destination) {
            Some((_, list)) => list.push(recipient),
            None => groups.push((record.destination, vec![recipient])),
        }
    }
    let arrived_at = UNIX_EPOCH + Duration::from_millis(message.arrived_ms);
    let at = crate::date::unix_seconds(SystemTime::now());
    let mail_from = match &envelope.from {
        ReversePath::Null => String::new(),
        ReversePath::Mailbox(m) => m.to_string(),
    };
    let explanation = format!(
        "{} (TLS {}) as accepted by the node at {} (queue id {} there), transferred",
        message.level,
        message.min_tls,
        conn.peer.ip(),
        message.origin_id
    );
    Ok(groups
        .into_iter()
        .map(|(_, recipients)| {
            let single = match recipients.as_slice() {
                [r] => Some(r.address.clone()),
                _ => None,
            };
            let trace = Trace::of_session(envelope, conn, hostname, single.as_deref(), at);
            NewCopy {
                tenant: message.tenant.clone(),
                mail_from: mail_from.clone(),
                mail_params: message.mail_params.clone(),
                recipients,
                policy: AcceptedPolicy {
                    level: message.level.clone(),
                    min_tls: message.min_tls.clone(),
                    explanation: explanation.clone(),
                },
                tls_request: message.tls_request,
                arrived_at,
                trace: received_header(&trace),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_match_by_network_and_mapped_addresses() {
        let nets: Vec<IpNet> = vec!["10.0.5.0/24".parse().expect("net")];
        let sessions = PeerSessions::new(&nets, &SessionConfig::default()).expect("peers");
        let peer = sessions
            .session_for("10.0.5.9".parse().expect("ip"))
            .expect("a peer");
        assert!(peer.extensions.iter().any(|k| k == KEYWORD));
        assert!(peer.extra_params.iter().any(|k| k == KEYWORD));
        assert!(sessions
            .session_for("::ffff:10.0.5.9".parse().expect("ip"))
            .is_some());
        assert!(sessions
            .session_for("10.0.6.9".parse().expect("ip"))
            .is_none());
        assert!(PeerSessions::new(&[], &SessionConfig::default()).is_none());
    }
}
