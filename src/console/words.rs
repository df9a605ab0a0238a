//! The product's wording for levels and versions ("TLS Peers" screen),
//! and the choices each form offers.

use crate::policy::{Direction, MinTlsVersion, SecurityLevel};

/// The level as the console shows it.
pub fn level(level: SecurityLevel) -> &'static str {
    match level {
        SecurityLevel::Opportunistic => "Opportunistic TLS",
        SecurityLevel::Mandatory => "Mandatory TLS",
        SecurityLevel::OpportunisticDane => "Opportunistic DANE TLS (outbound only)",
        SecurityLevel::MandatoryDane => "Mandatory DANE TLS (outbound only)",
        SecurityLevel::MtaSts => "MTA-STS (outbound only)",
    }
}

/// The minimum version as the console shows it.
pub fn min_tls(version: MinTlsVersion) -> &'static str {
    match version {
        MinTlsVersion::Tls13 => "TLS 1.3",
        MinTlsVersion::Tls12 => "TLS 1.2",
        MinTlsVersion::Any => "No restriction",
    }
}

/// The levels a form for `direction` offers: a level that does not apply
/// inbound is not offered there.
pub(crate) fn levels_for(direction: Direction) -> Vec<SecurityLevel> {
    SecurityLevel::ALL
        .into_iter()
        .filter(|l| l.allowed_in(direction))
        .collect()
}

/// The minimum versions, strictest first, as the product lists them.
pub(crate) const MIN_TLS_CHOICES: [MinTlsVersion; 3] = [
    MinTlsVersion::Tls13,
    MinTlsVersion::Tls12,
    MinTlsVersion::Any,
];

/// "Enabled" / "Disabled".
pub fn status(enabled: bool) -> &'static str {
    if enabled {
        "Enabled"
    } else {
        "Disabled"
    }
}

/// "Inbound" / "Outbound".
pub fn direction(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => "Inbound",
        Direction::Outbound => "Outbound",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_offers_no_outbound_only_level() {
        let inbound = levels_for(Direction::Inbound);
        assert_eq!(
            inbound,
            [SecurityLevel::Opportunistic, SecurityLevel::Mandatory]
        );
        assert!(inbound.iter().all(|l| !level(*l).contains("outbound only")));
        assert_eq!(levels_for(Direction::Outbound).len(), 5);
    }
}
