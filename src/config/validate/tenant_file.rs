//! The files of `[server] tenants_dir`: each read on its own (a syntax
//! error names its file and line and leaves the other files checked), held
//! to one tenant, then added to the main file's tenants and domains so that
//! every other check treats them as if written there. The files are
//! deserialized on every core.

use super::*;
use crate::config::raw::RawTenantFile;
use crate::parallel;

impl Validator<'_> {
    /// Reads `files` (whose sources follow the main file's in
    /// `self.sources`) into `raw`; the tenant each file holds.
    pub(super) fn tenant_files(
        &mut self,
        raw: &mut RawConfig,
        files: &[TenantFile],
    ) -> Vec<Option<String>> {
        let mut file_tenants = Vec::with_capacity(files.len());
        // Tenant name -> the span that gave a file its tenant.
        let mut owners: HashMap<String, Range<usize>> = HashMap::new();
        let parsed_files = parse_all(files);
        for (i, (file, parsed)) in files.iter().zip(parsed_files).enumerate() {
            let base = self.sources[i + 1].base;
            let parsed = match parsed {
                Ok(parsed) => parsed.shift(base),
                Err(e) => {
                    self.errors.push(ConfigError {
                        file: file.name(),
                        location: e.span().map(|s| Location::of_offset(&file.text, s.start)),
                        kind: Kind::Syntax(e.message().trim().to_owned()),
                    });
                    file_tenants.push(None);
                    self.part_sizes.push(0);
                    continue;
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
            self.part_sizes.push(parsed.domains.len());
            raw.tenants.extend(parsed.tenants);
            raw.domains.extend(parsed.domains);
        }
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

/// Fewer files than this per thread are not worth a thread.
const FILES_PER_THREAD: usize = 64;

/// Deserializes every file, in order, one contiguous run of files per
/// core (10,000 tenant files are most of a start's work).
fn parse_all(files: &[TenantFile]) -> Vec<Result<RawTenantFile, toml::de::Error>> {
    let runs = parallel::in_runs(files, FILES_PER_THREAD, |run| {
        run.iter()
            .map(|file| toml::from_str::<RawTenantFile>(&file.text))
            .collect::<Vec<_>>()
    });
    runs.into_iter().flatten().collect()
}
