//! The `_mta-sts` TXT record parser on arbitrary records: never panics, and
//! an accepted id is 1 to 32 letters or digits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sealpost::mta_sts::txt::{join_txt_strings, parse_txt_records};

fuzz_target!(|data: &[u8]| {
    // Split the input into records and character-strings at 0xff / 0xfe.
    let records: Vec<String> = data
        .split(|b| *b == 0xff)
        .map(|record| join_txt_strings(&record.split(|b| *b == 0xfe).collect::<Vec<_>>()))
        .collect();
    if let Ok(record) = parse_txt_records(&records) {
        assert!((1..=32).contains(&record.id.len()));
        assert!(record.id.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
});
