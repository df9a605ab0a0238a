//! Fuzzes the command-line parser and the client-side reply/EHLO parsers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealpost::smtp::{parse_command, EhloCapabilities, ReplyParser};

fuzz_target!(|data: &[u8]| {
    if let Err(e) = parse_command(data) {
        let reply = e.reply();
        assert!((500..600).contains(&reply.code));
    }
    let mut parser = ReplyParser::new();
    parser.push(data);
    while let Some(Ok(reply)) = parser.next_reply() {
        let _ = EhloCapabilities::parse(&reply);
        let _ = reply.to_bytes();
    }
});
