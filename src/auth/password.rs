//! Password hashes as configured: `pbkdf2-sha256$<iterations>$<salt>$<hash>`
//! with the salt and the derived key in standard base64 (padding optional).
//! PBKDF2-HMAC-SHA256 (RFC 8018 section 5.2) from ring; verification
//! compares in constant time.

use std::fmt;
use std::num::NonZeroU32;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};

/// The scheme name, the first field of a hash.
pub const SCHEME: &str = "pbkdf2-sha256";

/// Iterations `sealpost hash-password` uses by default (OWASP's 2023
/// figure for PBKDF2-HMAC-SHA256).
pub const DEFAULT_ITERATIONS: u32 = 600_000;

/// Fewer iterations than this are refused in the configuration.
pub const MIN_ITERATIONS: u32 = 10_000;

const SALT_LEN: usize = 16;
const KEY_LEN: usize = 32;
const MIN_SALT_LEN: usize = 8;
const MIN_KEY_LEN: usize = 16;

/// Standard base64, padded or not.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What a password for a user who does not exist is checked against, so
/// that refusing it costs what refusing a known user's wrong password
/// costs (`iterations` rounds; no user enumeration by timing). No password
/// matches it.
pub fn decoy_hash(iterations: u32) -> Option<PasswordHash> {
    PasswordHash::parse(&format!(
        "{SCHEME}${iterations}$c2VhbHBvc3QtZGVjb3k=$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    ))
    .ok()
}

/// A parsed password hash.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    iterations: NonZeroU32,
    salt: Vec<u8>,
    key: Vec<u8>,
}

/// Why a configured hash cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordHashError {
    #[error("expected `{SCHEME}$<iterations>$<salt base64>$<hash base64>` (make one with `sealpost hash-password`)")]
    Format,
    #[error("unknown scheme `{0}` (only `{SCHEME}` is supported)")]
    Scheme(String),
    #[error("iterations `{0}` is not a number from {MIN_ITERATIONS} to 4294967295")]
    Iterations(String),
    #[error("the {what} is not valid base64")]
    Base64 { what: &'static str },
    #[error("the {what} is too short (at least {min} bytes)")]
    TooShort { what: &'static str, min: usize },
    #[error("the system's random number generator failed")]
    Random,
}

impl PasswordHash {
    /// Parses `pbkdf2-sha256$<iterations>$<salt>$<hash>`.
    pub fn parse(text: &str) -> Result<PasswordHash, PasswordHashError> {
        let mut fields = text.trim().split('$');
        let (Some(scheme), Some(iterations), Some(salt), Some(key), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(PasswordHashError::Format);
        };
        if scheme != SCHEME {
            return Err(PasswordHashError::Scheme(scheme.to_string()));
        }
        let iterations = iterations
            .parse::<u32>()
            .ok()
            .filter(|&n| n >= MIN_ITERATIONS)
            .and_then(NonZeroU32::new)
            .ok_or_else(|| PasswordHashError::Iterations(iterations.to_string()))?;
        let decode = |value: &str, what: &'static str, min: usize| {
            let bytes = LENIENT
                .decode(value)
                .map_err(|_| PasswordHashError::Base64 { what })?;
            if bytes.len() < min {
                return Err(PasswordHashError::TooShort { what, min });
            }
            Ok(bytes)
        };
        Ok(PasswordHash {
            iterations,
            salt: decode(salt, "salt", MIN_SALT_LEN)?,
            key: decode(key, "hash", MIN_KEY_LEN)?,
        })
    }

    /// Whether `password` is the one hashed (constant-time comparison).
    /// Costs `iterations` HMAC rounds: call it off the async executor.
    pub fn verify(&self, password: &[u8]) -> bool {
        pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            self.iterations,
            &self.salt,
            password,
            &self.key,
        )
        .is_ok()
    }

    pub fn iterations(&self) -> u32 {
        self.iterations.get()
    }
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}${}${}${}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(&self.key)
        )
    }
}

/// The salt and key stay out of logs.
impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHash")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Hashes `password` with a fresh random salt.
pub fn hash_password(password: &[u8], iterations: u32) -> Result<PasswordHash, PasswordHashError> {
    let iterations = NonZeroU32::new(iterations)
        .filter(|n| n.get() >= MIN_ITERATIONS)
        .ok_or_else(|| PasswordHashError::Iterations(iterations.to_string()))?;
    let mut salt = vec![0u8; SALT_LEN];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| PasswordHashError::Random)?;
    let mut key = vec![0u8; KEY_LEN];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        password,
        &mut key,
    );
    Ok(PasswordHash {
        iterations,
        salt,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_round_trips_and_verifies() {
        let hash = hash_password(b"correct horse", MIN_ITERATIONS).expect("hash");
        let text = hash.to_string();
        assert!(text.starts_with("pbkdf2-sha256$10000$"), "{text}");
        let parsed = PasswordHash::parse(&text).expect("parse");
        assert_eq!(parsed, hash);
        assert!(parsed.verify(b"correct horse"));
        assert!(!parsed.verify(b"correct horse "));
        assert!(!parsed.verify(b""));
        // Unpadded base64 is accepted too.
        let unpadded = text.replace('=', "");
        assert!(PasswordHash::parse(&unpadded)
            .expect("unpadded")
            .verify(b"correct horse"));
        assert!(!format!("{parsed:?}").contains(&STANDARD.encode(&parsed.key)));
    }

    #[test]
    fn a_known_vector_verifies() {
        // PBKDF2-HMAC-SHA256("password", "saltsaltsaltsalt", 10000, 32).
        let mut key = [0u8; 32];
        let n = NonZeroU32::new(10_000).expect("nonzero");
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            n,
            b"saltsaltsaltsalt",
            b"password",
            &mut key,
        );
        let text = format!(
            "pbkdf2-sha256$10000${}${}",
            STANDARD.encode(b"saltsaltsaltsalt"),
            STANDARD.encode(key)
        );
        assert!(PasswordHash::parse(&text)
            .expect("parse")
            .verify(b"password"));
    }

    #[test]
    fn bad_hashes_say_why() {
        let salt = STANDARD.encode([1u8; 16]);
        let key = STANDARD.encode([2u8; 32]);
        let table = [
            ("nonsense".to_string(), "expected"),
            (format!("sha1$10000${salt}${key}"), "unknown scheme"),
            (format!("pbkdf2-sha256$999${salt}${key}"), "iterations"),
            (format!("pbkdf2-sha256$many${salt}${key}"), "iterations"),
            (format!("pbkdf2-sha256$10000$!!${key}"), "salt is not valid"),
            (
                format!("pbkdf2-sha256$10000${salt}$AAAA"),
                "hash is too short",
            ),
            (format!("pbkdf2-sha256$10000${salt}${key}$x"), "expected"),
        ];
        for (text, want) in table {
            let error = PasswordHash::parse(&text).expect_err(&text).to_string();
            assert!(error.contains(want), "{text}: {error}");
        }
        assert!(hash_password(b"x", 5).is_err());
    }
}
