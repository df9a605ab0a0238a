//! The TLS peer policy model: security levels, minimum TLS versions and the
//! direction of mail flow.
pub mod level;

pub use level::{Direction, MinTlsVersion, SecurityLevel};
