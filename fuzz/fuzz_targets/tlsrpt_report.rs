//! Received TLS reports (RFC 8460): the mail part extraction, then the
//! limited gzip/JSON decoding, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealpost::tlsrpt::{decode, mail::report_part, Encoding, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        received: 64 * 1024,
        json: 256 * 1024,
    };
    let _ = decode(data, Encoding::Gzip, limits);
    let _ = decode(data, Encoding::Json, limits);
    if let Some((encoding, bytes)) = report_part(data) {
        let _ = decode(&bytes, encoding, limits);
    }
    let _ = sealpost::inbound::tls_request::tls_required_no(data);
});
