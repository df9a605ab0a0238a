//! The connection side of an attempt's SMTP driver: a pooled connection
//! that satisfies the message's requirement or a new one (with its fleet
//! lease in a fleet), the transaction on it, and the connection back to
//! the pool or closed afterwards.

use super::*;

impl SmtpDriver<'_> {
    /// A pooled connection if one satisfies the message's requirement (a
    /// fresh one when the pooled one turns out dead before the message was
    /// sent), else a new connection, with its fleet lease in a fleet.
    pub(super) async fn connect_and_send(
        &self,
        hop: &Hop,
        addr: SocketAddr,
        params: &TlsParams,
        message: &OutboundMessage<'_>,
        pooled: bool,
    ) -> Tried {
        let mut spare = None;
        if pooled {
            if let Some(mut idle) = self.pool.take(&hop.host, addr, params) {
                if session_verdict(hop, params, idle.conn.achieved()).is_err() {
                    // Not for this message (others may use it): a new
                    // connection decides anew.
                    if let Some(idle) = self.pool.put(&hop.host, idle) {
                        idle.close().await;
                    }
                } else if let Some(tried) = self.send(hop, &mut idle.conn, message).await {
                    self.release(hop, idle, &tried).await;
                    return tried;
                } else {
                    debug!(host = %hop.host, %addr, "pooled connection was closed; opening a new one");
                    // Its lease goes to the new connection.
                    spare = idle.lease.take();
                }
            }
        }
        let lease = match spare {
            Some(lease) => Some(lease),
            None => self.connection_lease().await,
        };
        let peer = Peer {
            mx_host: hop.host.clone(),
            addr,
            local: None,
        };
        let conn = match Connection::connect(peer, params, self.client.clone()).await {
            Ok(conn) => conn,
            Err(e) => return Tried::Failed(e),
        };
        let mut leased = Leased { conn, lease };
        if let Err(why) = session_verdict(hop, params, leased.conn.achieved()) {
            let local = leased.conn.peer().local.map(|l| l.ip());
            leased.close().await;
            return Tried::NotUsed { why, local };
        }
        match self.send(hop, &mut leased.conn, message).await {
            Some(tried) => {
                self.release(hop, leased, &tried).await;
                tried
            }
            None => Tried::Closed,
        }
    }

    /// In a fleet, the lease a new connection to the destination needs
    /// (`None` on a node alone). At the fleet's limit the delivery waits
    /// here, neither failed nor deferred: an idle connection of this
    /// destination is closed first to free its lease, else it asks again
    /// every [`LEASE_POLL`] until a connection closes somewhere in the
    /// fleet (or a crashed node's lease expires).
    pub(super) async fn connection_lease(&self) -> Option<ConnectionLease> {
        let cluster = self.shared.joined_cluster().await?;
        let mut waiting_since: Option<Instant> = None;
        loop {
            if let Some(lease) = cluster.try_acquire_connection(self.destination).await {
                if let Some(since) = waiting_since {
                    debug!(destination = %self.destination, waited = ?since.elapsed(), "fleet connection lease granted after waiting");
                }
                return Some(lease);
            }
            if let Some(idle) = self.pool.take_oldest() {
                idle.close().await;
                continue;
            }
            if waiting_since.is_none() {
                debug!(destination = %self.destination, "the fleet's connection limit is reached; waiting for a lease");
                waiting_since = Some(Instant::now());
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
    }

    /// Back to the pool after a transaction, or closed (its lease released
    /// once it is).
    pub(super) async fn release(&self, hop: &Hop, conn: Leased, tried: &Tried) {
        if !matches!(tried, Tried::Ran(..) | Tried::Refused(..)) {
            return;
        }
        // Redis is out and this node holds more than its share: close.
        if conn.lease.as_ref().is_some_and(ConnectionLease::over_share) {
            conn.close().await;
            return;
        }
        if let Some(conn) = self.pool.put(&hop.host, conn) {
            conn.close().await;
        }
    }

    /// Sends on `conn`; the caller pools or closes it. `None`: the
    /// connection failed before the message was sent.
    pub(super) async fn send(
        &self,
        hop: &Hop,
        conn: &mut Connection,
        message: &OutboundMessage<'_>,
    ) -> Option<Tried> {
        let result = conn.send(message).await;
        let achieved = conn.achieved().clone();
        let tried = match result {
            Ok(Delivery::Attempted(outcomes)) => Tried::Ran(outcomes, achieved),
            Ok(Delivery::Refused(why)) => Tried::Refused(why, achieved),
            Err(e) if body_was_sent(&e) => Tried::Unknown(e),
            Err(e) => {
                debug!(host = %hop.host, error = %e, "connection failed before the message was sent");
                return None;
            }
        };
        Some(tried)
    }

    pub(super) fn ran(
        &self,
        lease: &Lease,
        outcomes: Vec<RecipientOutcome>,
        achieved: &Achieved,
    ) -> (Outcomes, sealpost_queue::Attempt, Health) {
        let peer = Peer::new(achieved.mx_host.clone(), achieved.peer);
        let mut summary: Option<Reason> = None;
        let mapped: Outcomes = lease
            .recipients
            .iter()
            .zip(outcomes)
            .map(|(r, outcome)| {
                let reason = remote(&peer, outcome.reply());
                summary.get_or_insert_with(|| reason.clone());
                let outcome = match outcome {
                    RecipientOutcome::Delivered(_) => Outcome::Delivered { reply: reason },
                    RecipientOutcome::TempFail(_) => Outcome::Deferred { reason },
                    RecipientOutcome::PermFail(_) => Outcome::Failed { reason },
                };
                (r.index, outcome)
            })
            .collect();
        let summary = summary.unwrap_or_else(|| {
            Reason::local(
                LocalCause::ProtocolError,
                status::PROTOCOL,
                "the transaction reported no recipient",
            )
        });
        (mapped, attempt_from(achieved, &summary), Health::Reached)
    }
}
