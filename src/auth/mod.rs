//! SMTP AUTH for tenants' relay clients (RFC 4954): the stored password
//! hashes (PBKDF2-HMAC-SHA256, RFC 8018 section 5.2) and the table of users
//! per tenant that `[[tenants]] users` configures.
//!
//! The SASL exchange itself (PLAIN, RFC 4616; LOGIN) is part of the sans-IO
//! session ([`crate::smtp::Session`]); the decision on the credentials is
//! the session handler's, which looks the user up here.

mod password;
mod users;

pub use password::{
    decoy_hash, hash_password, PasswordHash, PasswordHashError, DEFAULT_ITERATIONS, MIN_ITERATIONS,
};
pub use users::{AuthUser, AuthUsers};
