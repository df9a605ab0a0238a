//! Fuzzes the client's EHLO capability parsing (RFC 5321 section 4.1.1.1,
//! SIZE from RFC 1870, STARTTLS from RFC 3207): whatever lines a server
//! advertises, parsing never panics and is the same on a second try.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealpost::smtp::{EhloCapabilities, Reply};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let reply = Reply {
        code: 250,
        enhanced: None,
        lines,
    };
    let first = EhloCapabilities::parse(&reply);
    let second = EhloCapabilities::parse(&reply);
    assert_eq!(format!("{first:?}"), format!("{second:?}"));
});
