//! The probe's certificate display walk (`CertInfo::parse`) on arbitrary
//! bytes, as an MX host may present them: never panics, and the validity
//! period it reads is printable.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sealpost::probe::CertInfo;

fuzz_target!(|data: &[u8]| {
    let info = CertInfo::parse(data);
    for time in [info.not_before, info.not_after].into_iter().flatten() {
        assert!(!time.to_string().is_empty());
    }
});
