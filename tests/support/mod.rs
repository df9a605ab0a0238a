//! Helpers shared by the integration tests: a test certificate authority,
//! and (as they land) the test DNS server with a signed zone and test SMTP
//! peers. Each test file takes what it needs with `mod support;`.
#![allow(dead_code)]

pub mod client;
pub mod dane_tls;
pub mod dns;
pub mod dsn_parse;
pub mod https;
pub mod outbound;
pub mod pebble;
pub mod pki;
pub mod proxy;
pub mod redis;
pub mod sealpost;
pub mod sink;
pub mod smtp;
pub mod sts;
