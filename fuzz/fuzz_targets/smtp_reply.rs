//! Fuzzes the SMTP client's reply parser (RFC 5321 section 4.2), which
//! reads what any server on the internet sends: the same bytes fed whole
//! and split at an arbitrary point give the same replies, and a parsed
//! reply renders back to bytes that parse to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealpost::smtp::reply::parse_reply;
use sealpost::smtp::ReplyParser;

fn replies(chunks: &[&[u8]]) -> Vec<String> {
    let mut parser = ReplyParser::new();
    let mut out = Vec::new();
    for chunk in chunks {
        parser.push(chunk);
        while let Some(next) = parser.next_reply() {
            match next {
                Ok(reply) => out.push(format!("{reply:?}")),
                Err(e) => {
                    out.push(format!("error: {e}"));
                    return out;
                }
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(bytes.len());
    let (a, b) = bytes.split_at(at);
    assert_eq!(replies(&[bytes]), replies(&[a, b]));
    if let Some(Ok(reply)) = parse_reply(bytes) {
        let again = parse_reply(&reply.to_bytes());
        assert!(matches!(again, Some(Ok(ref r)) if *r == reply), "{reply:?}");
    }
});
