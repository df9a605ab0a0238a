//! Property tests for the MTA-STS parsers and MX matching: no input makes
//! them panic, rendered policies parse back, and the wildcard rule holds.
use proptest::prelude::*;
use sealpost::mta_sts::txt::parse_txt_records;
use sealpost::mta_sts::{Mode, MxPattern, Policy};

proptest! {
    #[test]
    fn policy_parser_never_panics(text in "\\PC{0,400}") {
        let _ = Policy::parse(&text);
    }

    #[test]
    fn policy_parser_never_panics_on_policy_like_lines(
        lines in prop::collection::vec(
            "(version|mode|max_age|mx|x)[ \t]*:[ \t]*[a-zA-Z0-9.*\\- ]{0,20}\r?", 0..8)
    ) {
        let _ = Policy::parse(&lines.join("\n"));
    }

    #[test]
    fn txt_parser_never_panics(record in "v=STSv1[; \t]{0,3}\\PC{0,80}", other in "\\PC{0,40}") {
        let _ = parse_txt_records(&[record, other]);
    }

    #[test]
    fn rendered_policies_parse_back(
        mode in prop::sample::select(vec![Mode::Enforce, Mode::Testing, Mode::None]),
        max_age in 0u64..=31_557_600,
        hosts in prop::collection::vec(("[a-z0-9]{1,12}(\\.[a-z0-9-]{1,12}){1,3}", any::<bool>()), 1..5),
    ) {
        let mx: Vec<MxPattern> = hosts
            .iter()
            .map(|(h, wild)| MxPattern::parse(&if *wild { format!("*.{h}") } else { h.clone() }))
            .collect::<Result<_, _>>()
            .expect("generated patterns are valid");
        let policy = Policy { mode, max_age, mx };
        prop_assert_eq!(Policy::parse(&policy.render()), Ok(policy.clone()));
        let crlf = policy.render().replace('\n', "\r\n");
        prop_assert_eq!(Policy::parse(&crlf), Ok(policy));
    }

    #[test]
    fn wildcard_covers_exactly_one_label(
        label in "[a-zA-Z0-9_-]{1,20}",
        extra in "[a-z0-9]{1,8}",
        base in "[a-z0-9]{1,10}\\.[a-z]{2,6}",
    ) {
        let pattern = MxPattern::parse(&format!("*.{base}")).expect("pattern");
        let host = format!("{label}.{}", base.to_uppercase());
        prop_assert!(pattern.matches(&host));
        let dotted = format!("{host}.");
        prop_assert!(pattern.matches(&dotted));
        prop_assert!(!pattern.matches(&base));
        let deeper = format!("{extra}.{label}.{base}");
        prop_assert!(!pattern.matches(&deeper));
        let exact = MxPattern::parse(&host).expect("exact");
        prop_assert!(exact.matches(&host.to_lowercase()));
        let longer = format!("{extra}{host}");
        prop_assert!(!exact.matches(&longer));
    }

    #[test]
    fn matching_any_host_never_panics(pattern in "(\\*\\.)?[a-z]{1,5}\\.[a-z]{1,3}", host in "\\PC{0,30}") {
        if let Ok(p) = MxPattern::parse(&pattern) {
            let _ = p.matches(&host);
        }
    }
}
