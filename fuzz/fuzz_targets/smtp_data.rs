//! Fuzzes the DATA receiver: the result must not depend on how the input is
//! split, the end must be a real `<CRLF>.<CRLF>`, and a stored body never
//! holds a bare LF.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealpost::smtp::{DataProgress, DataReceiver};

fn run(pieces: &[&[u8]]) -> (Option<(usize, bool)>, Vec<u8>) {
    let mut rx = DataReceiver::new(4096);
    let mut body = Vec::new();
    let mut offset = 0;
    for piece in pieces {
        match rx.receive(piece, &mut body) {
            DataProgress::NeedMore => offset += piece.len(),
            DataProgress::Done { consumed, result } => {
                return (Some((offset + consumed, result.is_ok())), body)
            }
        }
    }
    (None, body)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let split = usize::from(split) % (input.len() + 1);
    let whole = run(&[input]);
    assert_eq!(whole, run(&[&input[..split], &input[split..]]));
    if let (Some((end, ok)), body) = &whole {
        let mut wire = b"\r\n".to_vec();
        wire.extend_from_slice(&input[..*end]);
        assert!(wire.ends_with(b"\r\n.\r\n"));
        if *ok {
            assert!(!body.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
        }
    }
});
