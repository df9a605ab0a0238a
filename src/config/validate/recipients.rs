//! `[[domains]] recipients`: the valid recipient lists a domain names.

use super::*;

impl Validator<'_> {
    /// Reads the `[[domains]] recipients` files of one file's `domains`
    /// into `lists`. A domain whose name is bad is skipped here (its error
    /// is recorded with the policy).
    pub(super) fn recipient_lists(
        &mut self,
        domains: &[Spanned<RawDomain>],
        base_dir: Option<&Path>,
        lists: &mut HashMap<String, Arc<RecipientList>>,
    ) {
        for domain in domains {
            let domain = domain.get_ref();
            let Some(file) = &domain.recipients else {
                continue;
            };
            let path = self.path(file, "domains.recipients", base_dir);
            let Ok(name) = domain.name.get_ref().parse::<DomainName>() else {
                continue;
            };
            if file.get_ref().is_empty() {
                continue;
            }
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) => {
                    self.error(
                        &file.span(),
                        Kind::RecipientsUnreadable {
                            path: path.display().to_string(),
                            reason: e.to_string(),
                        },
                    );
                    continue;
                }
            };
            match RecipientList::parse(&path, &text, name.as_str()) {
                Ok(list) => {
                    lists.insert(name.as_str().to_string(), Arc::new(list));
                }
                Err(bad_lines) => {
                    for bad in bad_lines {
                        self.errors.push(ConfigError {
                            file: path.display().to_string(),
                            location: Some(Location {
                                line: bad.line,
                                column: bad.column,
                            }),
                            kind: Kind::BadRecipient {
                                given: bad.given,
                                reason: bad.reason,
                            },
                        });
                    }
                }
            }
        }
    }
}
