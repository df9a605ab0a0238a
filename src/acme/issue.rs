//! One issuance for one name (RFC 8555 section 7.4 through the ACME
//! crate): a new order, the TLS-ALPN-01 challenge (RFC 8737) answered by
//! the MTA-STS host through the shared certificate resolver, finalization
//! with a fresh key, and the chain.

use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};

use super::http01::Http01Tokens;
use crate::config::AcmeChallenge;
use crate::tls::{acme_challenge_key, CertError, SniCertResolver};

/// A certificate just issued, as PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// Why an issuance failed; each says which step, with the CA's words.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("the ACME account: {0}")]
    Account(instant_acme::Error),
    #[error("placing the order: {0}")]
    Order(instant_acme::Error),
    #[error("the CA offers no {kind} challenge for {host}")]
    NoChallenge { host: String, kind: &'static str },
    #[error("the CA could not validate {host}: {detail}")]
    Challenge { host: String, detail: String },
    #[error("finalizing the order: {0}")]
    Finalize(instant_acme::Error),
    #[error("the challenge certificate: {0}")]
    ChallengeCertificate(#[from] CertError),
}

/// How long the CA may take to validate, then to issue.
const VALIDATION: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(120));

/// Where challenges are answered.
pub struct Responders<'a> {
    pub kind: AcmeChallenge,
    /// TLS-ALPN-01: the MTA-STS host's certificate resolver.
    pub certificates: &'a SniCertResolver,
    /// HTTP-01: the tokens the HTTP listener answers.
    pub http01: &'a Http01Tokens,
}

/// Orders a certificate for `host`, answering its challenge through
/// `responders`.
pub async fn issue(
    account: &Account,
    host: &str,
    responders: &Responders<'_>,
) -> Result<Issued, IssueError> {
    let certificates = responders.certificates;
    let mut tokens = Vec::new();
    let identifiers = [Identifier::Dns(host.to_owned())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(IssueError::Order)?;
    let result = async {
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(IssueError::Order)?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(IssueError::Challenge {
                        host: host.to_owned(),
                        detail: format!("the authorization is {other:?}"),
                    })
                }
            }
            let (kind, name) = match responders.kind {
                AcmeChallenge::TlsAlpn01 => (ChallengeType::TlsAlpn01, "tls-alpn-01"),
                AcmeChallenge::Http01 => (ChallengeType::Http01, "http-01"),
            };
            let mut challenge =
                authorization
                    .challenge(kind)
                    .ok_or_else(|| IssueError::NoChallenge {
                        host: host.to_owned(),
                        kind: name,
                    })?;
            let key_authorization = challenge.key_authorization();
            match responders.kind {
                AcmeChallenge::TlsAlpn01 => {
                    let digest = key_authorization.digest();
                    certificates
                        .set_challenge(host, Some(acme_challenge_key(host, digest.as_ref())?));
                }
                AcmeChallenge::Http01 => {
                    let token = challenge.token.clone();
                    responders
                        .http01
                        .set(&token, Some(key_authorization.as_str().to_owned()));
                    tokens.push(token);
                }
            }
            challenge
                .set_ready()
                .await
                .map_err(|e| challenge_answered(host, e))?;
        }
        let status = order.poll_ready(&VALIDATION).await;
        match status {
            Ok(OrderStatus::Ready) => Ok(()),
            Ok(other) => Err(IssueError::Challenge {
                host: host.to_owned(),
                detail: challenge_problem(&mut order)
                    .await
                    .unwrap_or_else(|| format!("the order is {other:?}")),
            }),
            Err(e) => Err(IssueError::Challenge {
                host: host.to_owned(),
                detail: e.to_string(),
            }),
        }
    }
    .await;
    certificates.set_challenge(host, None);
    for token in &tokens {
        responders.http01.set(token, None);
    }
    result?;
    let key_pem = order.finalize().await.map_err(IssueError::Finalize)?;
    let chain_pem = order
        .poll_certificate(&VALIDATION)
        .await
        .map_err(IssueError::Finalize)?;
    Ok(Issued { chain_pem, key_pem })
}

/// The error of telling the CA a challenge is ready. A CA may validate
/// before it answers; its answer then carries the failed validation (a
/// problem document), which is the challenge's failure, not the order's.
fn challenge_answered(host: &str, error: instant_acme::Error) -> IssueError {
    match error {
        instant_acme::Error::Api(problem) => IssueError::Challenge {
            host: host.to_owned(),
            detail: problem.to_string(),
        },
        other => IssueError::Order(other),
    }
}

/// The CA's explanation of a failed challenge, if it gave one.
async fn challenge_problem(order: &mut instant_acme::Order) -> Option<String> {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let Ok(state) = authorization.refresh().await else {
            continue;
        };
        if let Some(problem) = state.challenges.iter().find_map(|c| c.error.as_ref()) {
            return Some(problem.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pebble (and any CA) may validate before it answers the challenge's
    /// POST: the answer then carries the failed validation, which
    /// instant-acme returns as an API error from `set_ready`.
    #[test]
    fn a_validation_failed_by_the_time_the_ca_answers_is_a_failed_challenge() {
        let problem: instant_acme::Problem = serde_json::from_str(
            r#"{"type": "urn:ietf:params:acme:error:unauthorized",
                "detail": "Failed to connect to 127.0.0.2:443 for the tls-alpn-01 challenge",
                "status": 403}"#,
        )
        .expect("problem document");
        let error = challenge_answered("mta-sts.broken.test", instant_acme::Error::Api(problem));
        assert!(
            matches!(&error, IssueError::Challenge { host, .. } if host == "mta-sts.broken.test"),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(
            text.starts_with("the CA could not validate mta-sts.broken.test: ")
                && text.contains("Failed to connect to 127.0.0.2:443")
                && text.contains("unauthorized"),
            "{text}"
        );
    }

    #[test]
    fn a_challenge_post_that_never_reached_the_ca_is_not_a_failed_validation() {
        let error = challenge_answered(
            "mta-sts.good.test",
            instant_acme::Error::Str("connection reset"),
        );
        assert!(matches!(error, IssueError::Order(_)), "{error:?}");
    }
}
