//! What one scrape writes beside the live counter families: the
//! per-tenant counters, queue depth and the gauges read at scrape time,
//! as a `prometheus-client` [`Collector`].

use std::collections::BTreeMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::{Gauges, TenantCounters};

#[derive(Debug)]
pub(super) struct Scrape {
    pub(super) tenants: Vec<(String, TenantCounters)>,
    pub(super) folded: usize,
    pub(super) queue_tenants: Vec<(String, u64)>,
    pub(super) states: Vec<(&'static str, u64)>,
    pub(super) gauges: Gauges,
    pub(super) acme_domains: BTreeMap<&'static str, u64>,
    pub(super) cluster: Option<(bool, usize)>,
}

type PerTenant = (&'static str, &'static str, fn(&TenantCounters) -> u64);

const PER_TENANT: [PerTenant; 4] = [
    (
        "sealpost_messages_received",
        "Messages accepted and queued durably, per tenant (capped: see sealpost_metrics_tenants_folded).",
        |c| c.received,
    ),
    (
        "sealpost_messages_delivered",
        "Messages delivered, per tenant.",
        |c| c.delivered,
    ),
    (
        "sealpost_messages_deferred",
        "Delivery attempts deferred (temporary failures), per tenant.",
        |c| c.deferred,
    ),
    (
        "sealpost_messages_bounced",
        "Messages failed permanently, per tenant.",
        |c| c.bounced,
    ),
];

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, value) in PER_TENANT {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (tenant, counters) in &self.tenants {
                metric
                    .encode_family(&[("tenant", tenant.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&value(counters), None)?;
            }
        }
        gauge(
            &mut encoder,
            "sealpost_metrics_tenants_folded",
            "Tenants counted under tenant=\"other\" in the per-tenant counters.",
            self.folded as u64,
        )?;
        let mut metric = encoder.encode_descriptor(
            "sealpost_queue_recipients",
            "Recipients in the queue, per state.",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in &self.states {
            metric
                .encode_family(&[("state", *state)])?
                .encode_gauge(n)?;
        }
        let mut metric = encoder.encode_descriptor(
            "sealpost_queue_messages",
            "Messages in the queue, per tenant (the largest queues, the rest as other).",
            None,
            MetricType::Gauge,
        )?;
        for (tenant, n) in &self.queue_tenants {
            metric
                .encode_family(&[("tenant", tenant.as_str())])?
                .encode_gauge(n)?;
        }
        gauge(
            &mut encoder,
            "sealpost_config_generation",
            "Configurations put in force since start (1 before any reload).",
            self.gauges.config_generation,
        )?;
        gauge(
            &mut encoder,
            "sealpost_disk_reserve_bytes",
            "[limits] min_free_disk: below it new mail is refused (0: no reserve).",
            self.gauges.disk_reserve_bytes,
        )?;
        if let Some(free) = self.gauges.disk_free_bytes {
            gauge(
                &mut encoder,
                "sealpost_disk_free_bytes",
                "Octets available on the queue's file system.",
                free,
            )?;
        }
        let mut metric = encoder.encode_descriptor(
            "sealpost_tls_certificate_expiry_timestamp_seconds",
            "When each certificate sealpost presents (STARTTLS, MTA-STS policy host) expires, Unix time.",
            None,
            MetricType::Gauge,
        )?;
        for cert in &self.gauges.certificates {
            metric
                .encode_family(&[("name", cert.name.as_str())])?
                .encode_gauge(&cert.not_after)?;
        }
        let mut metric = encoder.encode_descriptor(
            "sealpost_acme_domains",
            "mta-sts names with ACME certificates, per state (dns-mismatch: the name does not point at this gateway).",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in &self.acme_domains {
            metric
                .encode_family(&[("state", *state)])?
                .encode_gauge(n)?;
        }
        if let Some((shared, alive)) = self.cluster {
            gauge(
                &mut encoder,
                "sealpost_cluster_limits_shared",
                "1 while limits are shared in Redis, 0 while they are local (Redis out).",
                u64::from(shared),
            )?;
            gauge(
                &mut encoder,
                "sealpost_cluster_nodes_alive",
                "Nodes seen alive at the last heartbeat that reached Redis.",
                alive as u64,
            )?;
        }
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    prometheus_client::metrics::gauge::ConstGauge::new(value).encode(metric)
}
