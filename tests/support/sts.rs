//! In-memory doubles for the MTA-STS cache's injected edges: a TXT source
//! (the DNS module provides the real one) and a scripted policy fetcher.
//! Both record what was asked of them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use sealpost::mta_sts::{FetchError, PolicyFetcher, StsTxtSource, TxtLookupError};

/// TXT records by query name (`_mta-sts.<domain>.`); unknown names are
/// NXDOMAIN.
#[derive(Default)]
pub struct MemoryTxt {
    records: Mutex<HashMap<String, Result<Vec<String>, TxtLookupError>>>,
    queried: Mutex<Vec<String>>,
}

impl MemoryTxt {
    /// Publishes `v=STSv1; id=<id>;` for `domain`.
    pub fn publish(&self, domain: &str, id: &str) {
        self.set(domain, Ok(vec![format!("v=STSv1; id={id};")]));
    }
    pub fn set(&self, domain: &str, answer: Result<Vec<String>, TxtLookupError>) {
        let name = format!("_mta-sts.{domain}.");
        self.records.lock().unwrap().insert(name, answer);
    }
    pub fn remove(&self, domain: &str) {
        self.records
            .lock()
            .unwrap()
            .remove(&format!("_mta-sts.{domain}."));
    }
    pub fn servfail(&self, domain: &str) {
        let name = format!("_mta-sts.{domain}.");
        self.set(
            domain,
            Err(TxtLookupError::Failed {
                name,
                reason: "SERVFAIL".into(),
            }),
        );
    }
    /// Every name looked up, in order.
    pub fn queried(&self) -> Vec<String> {
        self.queried.lock().unwrap().clone()
    }
}

impl StsTxtSource for MemoryTxt {
    fn lookup_txt<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, TxtLookupError>> {
        self.queried.lock().unwrap().push(name.to_string());
        let answer = self.records.lock().unwrap().get(name).cloned();
        Box::pin(async move {
            answer.unwrap_or_else(|| {
                Err(TxtLookupError::NoRecords {
                    name: name.to_string(),
                })
            })
        })
    }
}

/// Policy bodies by domain; counts fetches. A fetch yields to the runtime
/// a few times before answering, so concurrent callers overlap.
#[derive(Default)]
pub struct ScriptedFetcher {
    bodies: Mutex<HashMap<String, Result<String, FetchError>>>,
    calls: AtomicUsize,
}

impl ScriptedFetcher {
    pub fn serve(&self, domain: &str, body: &str) {
        self.bodies
            .lock()
            .unwrap()
            .insert(domain.to_string(), Ok(body.to_string()));
    }
    pub fn fail(&self, domain: &str, status: u16) {
        self.bodies.lock().unwrap().insert(
            domain.to_string(),
            Err(FetchError::Status {
                host: format!("mta-sts.{domain}"),
                status,
            }),
        );
    }
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl PolicyFetcher for ScriptedFetcher {
    fn fetch<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<String, FetchError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
            self.bodies
                .lock()
                .unwrap()
                .get(domain)
                .cloned()
                .unwrap_or_else(|| {
                    Err(FetchError::Status {
                        host: format!("mta-sts.{domain}"),
                        status: 404,
                    })
                })
        })
    }
}
