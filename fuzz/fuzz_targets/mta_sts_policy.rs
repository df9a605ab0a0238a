//! The MTA-STS policy parser on arbitrary bodies: never panics, and any
//! accepted policy renders to text that parses to the same policy.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sealpost::mta_sts::Policy;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(policy) = Policy::parse(text) {
            assert_eq!(Policy::parse(&policy.render()), Ok(policy.clone()));
            for mx in &policy.mx {
                let _ = mx.matches(text);
            }
        }
    }
});
