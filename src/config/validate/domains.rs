//! The `[[domains]]` checks, one file's domains at a time: a load checks
//! each file's domains as soon as that file is parsed, while the loader
//! threads parse the next ones (`super::tenant_file`), so that the checks
//! add little to a start's time. What they build is gathered in a
//! [`DomainChecks`] and read out once every file is in.

use super::*;
use crate::config::delivery::Routes;

/// What the checks of every file's domains have built so far.
pub(super) struct DomainChecks<'b> {
    /// Relative `recipients` paths start here.
    base_dir: Option<&'b Path>,
    policy: DomainParts,
    hosted_mta_sts: HashMap<String, DomainMtaSts>,
    recipients: HashMap<String, Arc<RecipientList>>,
    routes: Routes,
}

impl DomainChecks<'_> {
    /// Ends the file being read: its domains are the policy's next
    /// partition.
    pub(super) fn end_file(&mut self) {
        self.policy.end_part();
    }
}

/// What the checks built, once every file is in.
pub(super) struct CheckedDomains {
    pub policy: Option<PolicySnapshot>,
    pub hosted_mta_sts: HashMap<String, DomainMtaSts>,
    pub recipients: HashMap<String, Arc<RecipientList>>,
    pub routes: Routes,
}

impl Validator<'_> {
    /// Checks to come under the main file's `[defaults]`, of about
    /// `expected` domains (a hint).
    pub(super) fn domain_checks<'b>(
        &mut self,
        raw: &RawConfig,
        base_dir: Option<&'b Path>,
        expected: usize,
    ) -> DomainChecks<'b> {
        DomainChecks {
            base_dir,
            policy: self.policy_defaults(raw, expected),
            hosted_mta_sts: HashMap::new(),
            recipients: HashMap::new(),
            routes: Routes::new(),
        }
    }

    /// Checks `domains` of the file being read: their policy (in the
    /// file's partition), hosted MTA-STS policies, recipient lists and
    /// routes.
    pub(super) fn check_domains(
        &mut self,
        checks: &mut DomainChecks<'_>,
        domains: &[Spanned<RawDomain>],
    ) {
        self.policy_domains(&mut checks.policy, domains);
        self.hosted_mta_sts(domains, &mut checks.hosted_mta_sts);
        self.recipient_lists(domains, checks.base_dir, &mut checks.recipients);
        self.routes(domains, &mut checks.routes);
    }

    pub(super) fn checked_domains(&mut self, checks: DomainChecks<'_>) -> CheckedDomains {
        CheckedDomains {
            policy: self.policy(checks.policy),
            hosted_mta_sts: checks.hosted_mta_sts,
            recipients: checks.recipients,
            routes: checks.routes,
        }
    }
}
