//! Fuzzes a whole server session with arbitrary client bytes, accepting
//! every MAIL, RCPT, AUTH and message; the machine must never panic or stall.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sealpost::smtp::{Event, Session, SessionConfig, Verdict};

fuzz_target!(|data: &[u8]| {
    let config = SessionConfig {
        max_message_size: 1024,
        tls_available: true,
        auth_available: true,
        ..SessionConfig::default()
    };
    let mut session = Session::new(Arc::new(config));
    for piece in data.chunks(64) {
        session.receive(piece);
        loop {
            match session.next_event() {
                Event::NeedInput => break,
                Event::MailFrom { .. }
                | Event::Rcpt { .. }
                | Event::Auth { .. }
                | Event::Message { .. } => {
                    session.answer(Verdict::Accept).expect("pending");
                }
                Event::StartTls => {
                    session.tls_established().expect("awaiting TLS");
                }
                Event::Close => return,
                Event::Helo { .. } | Event::LimitReached(_) => {}
                Event::AwaitingAnswer => unreachable!("answered above"),
            }
        }
        let _ = session.take_output();
    }
});
