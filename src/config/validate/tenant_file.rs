//! The files of `[server] tenants_dir`: each read on its own (a syntax
//! error names its file and line and leaves the other files checked) and
//! held to one tenant. Its tenants are added to the main file's, so that
//! every other check treats them as if written there; its domains are
//! checked as a partition of their own (`super::domains`). The files are
//! deserialized on the other cores while this thread checks each one as
//! it comes.

use super::*;
use crate::config::raw::RawTenantFile;
use crate::parallel;

impl Validator<'_> {
    /// Reads `files` (whose sources follow the main file's in
    /// `self.sources`): their tenants into `raw`, their domains checked
    /// into `checks` (one partition per file) and then kept in
    /// `raw_domains` (to be freed), each file as soon as it is parsed. The
    /// tenant each file holds.
    pub(super) fn tenant_files(
        &mut self,
        raw: &mut RawConfig,
        files: &[TenantFile],
        checks: &mut DomainChecks<'_>,
        raw_domains: &mut Vec<Vec<Spanned<RawDomain>>>,
    ) -> Vec<Option<String>> {
        let mut file_tenants = Vec::with_capacity(files.len());
        raw_domains.reserve(files.len());
        // Tenant name -> the span that gave a file its tenant.
        let mut owners: HashMap<String, Range<usize>> = HashMap::new();
        // Each file's index and offset: the parse threads move its spans there.
        let placed: Vec<(usize, usize)> = (self.sources[1..].iter().enumerate())
            .map(|(i, source)| (i, source.base))
            .collect();
        let parse = |&(i, base): &(usize, usize)| {
            (toml::from_str::<RawTenantFile>(&files[i].text))
                .map(|parsed| parsed.shift(base))
                .map_err(|e| (&files[i], e))
        };
        parallel::streamed(&placed, FILES_PER_THREAD, parse, |parsed| {
            let parsed = match parsed {
                Ok(parsed) => parsed,
                Err((file, e)) => {
                    self.errors
                        .push(syntax_error(&file.name(), &file.text, &e, 0));
                    file_tenants.push(None);
                    checks.end_file();
                    return;
                }
            };
            let tenant = self.one_tenant(&parsed);
            if let Some((name, span)) = &tenant {
                match owners.get(name) {
                    Some(first) => {
                        let (first_file, first_line) = self.first_at(first, span);
                        self.error(
                            span,
                            Kind::DuplicateTenant {
                                name: name.clone(),
                                first_line,
                                first_file,
                            },
                        );
                    }
                    None => {
                        owners.insert(name.clone(), span.clone());
                    }
                }
            }
            file_tenants.push(tenant.map(|(name, _)| name));
            self.check_domains(checks, &parsed.domains);
            checks.end_file();
            raw.tenants.extend(parsed.tenants);
            raw_domains.push(parsed.domains);
        });
        file_tenants
    }

    /// The one tenant a file holds (its `[[tenants]]` name, else its first
    /// domain's tenant) and where it is named; an error for a second
    /// `[[tenants]]` table and for each domain of another tenant.
    fn one_tenant(&mut self, file: &RawTenantFile) -> Option<(String, Range<usize>)> {
        if let Some(second) = file.tenants.get(1) {
            self.error(
                &second.name.span(),
                Kind::TenantFileTenants {
                    count: file.tenants.len(),
                },
            );
        }
        let (name, span) = match (file.tenants.first(), file.domains.first()) {
            (Some(tenant), _) => (tenant.name.get_ref(), tenant.name.span()),
            (None, Some(domain)) => (
                domain.get_ref().tenant.get_ref(),
                domain.get_ref().tenant.span(),
            ),
            (None, None) => return None,
        };
        let name = name.trim().to_owned();
        for domain in &file.domains {
            let domain = domain.get_ref();
            let tenant = domain.tenant.get_ref().trim();
            if tenant != name && !tenant.is_empty() {
                self.error(
                    &domain.tenant.span(),
                    Kind::ForeignTenant {
                        domain: domain.name.get_ref().clone(),
                        tenant: tenant.to_owned(),
                        file_tenant: name.clone(),
                    },
                );
            }
        }
        Some((name, span))
    }
}

/// Fewer files than this per thread are not worth a thread (10,000
/// tenant files are most of a start's work).
const FILES_PER_THREAD: usize = 64;
