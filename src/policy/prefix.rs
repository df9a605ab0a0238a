//! A longest-prefix-match map from IP networks to values: one hash table
//! per prefix length present, searched from the longest, so a lookup costs
//! at most one hash probe per distinct prefix length (never a scan of the
//! entries). Used for inbound CIDR peers and for tenants' relay sources.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

/// Networks to values; lookups return the matches longest prefix first.
#[derive(Debug, Clone)]
pub(crate) struct PrefixMap<V> {
    v4: Vec<(u8, HashMap<u32, V>)>,
    v6: Vec<(u8, HashMap<u128, V>)>,
}

impl<V> Default for PrefixMap<V> {
    fn default() -> Self {
        PrefixMap {
            v4: Vec::new(),
            v6: Vec::new(),
        }
    }
}

impl<V> PrefixMap<V> {
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Adds a network; returns the value it replaces, if the same network
    /// was there already.
    pub fn insert(&mut self, net: IpNet, value: V) -> Option<V> {
        match net {
            IpNet::V4(net) => {
                let len = net.prefix_len();
                let bits = mask_v4(u32::from(net.network()), len);
                table_for(&mut self.v4, len).insert(bits, value)
            }
            IpNet::V6(net) => {
                let len = net.prefix_len();
                let bits = mask_v6(u128::from(net.network()), len);
                table_for(&mut self.v6, len).insert(bits, value)
            }
        }
    }

    /// Every network containing `ip`, longest prefix first. IPv4-mapped
    /// IPv6 addresses match IPv4 networks.
    pub fn matches(&self, ip: IpAddr) -> impl Iterator<Item = &V> + '_ {
        let (v4, v6) = match ip.to_canonical() {
            IpAddr::V4(v4) => (Some(u32::from(v4)), None),
            IpAddr::V6(v6) => (None, Some(u128::from(v6))),
        };
        let from_v4 = v4.into_iter().flat_map(move |bits| {
            self.v4
                .iter()
                .filter_map(move |(len, table)| table.get(&mask_v4(bits, *len)))
        });
        let from_v6 = v6.into_iter().flat_map(move |bits| {
            self.v6
                .iter()
                .filter_map(move |(len, table)| table.get(&mask_v6(bits, *len)))
        });
        from_v4.chain(from_v6)
    }

    /// The value of the longest network containing `ip`.
    pub fn longest(&self, ip: IpAddr) -> Option<&V> {
        self.matches(ip).next()
    }

    /// Every network and its value, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = (IpNet, &V)> + '_ {
        let v4 = self.v4.iter().flat_map(|(len, table)| {
            table.iter().filter_map(move |(&bits, v)| {
                let net = ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(bits), *len).ok()?;
                Some((IpNet::V4(net), v))
            })
        });
        let v6 = self.v6.iter().flat_map(|(len, table)| {
            table.iter().filter_map(move |(&bits, v)| {
                let net = ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(bits), *len).ok()?;
                Some((IpNet::V6(net), v))
            })
        });
        v4.chain(v6)
    }

    /// Keeps only the networks whose value `keep` accepts.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        for (_, table) in &mut self.v4 {
            table.retain(|_, v| keep(v));
        }
        for (_, table) in &mut self.v6 {
            table.retain(|_, v| keep(v));
        }
        self.v4.retain(|(_, table)| !table.is_empty());
        self.v6.retain(|(_, table)| !table.is_empty());
    }
}

fn mask_v4(bits: u32, len: u8) -> u32 {
    match len {
        0 => 0,
        n => bits & (u32::MAX << (32 - u32::from(n.min(32)))),
    }
}

fn mask_v6(bits: u128, len: u8) -> u128 {
    match len {
        0 => 0,
        n => bits & (u128::MAX << (128 - u32::from(n.min(128)))),
    }
}

/// The table for one prefix length, keeping the list longest-first.
fn table_for<K, V>(tables: &mut Vec<(u8, HashMap<K, V>)>, len: u8) -> &mut HashMap<K, V> {
    let pos = match tables.iter().position(|(l, _)| *l <= len) {
        Some(p) if tables[p].0 == len => p,
        Some(p) => {
            tables.insert(p, (len, HashMap::new()));
            p
        }
        None => {
            tables.push((len, HashMap::new()));
            tables.len() - 1
        }
    };
    &mut tables[pos].1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("network")
    }

    #[test]
    fn longest_prefix_first_for_both_families() {
        let mut map = PrefixMap::default();
        map.insert(net("10.0.0.0/8"), "8");
        map.insert(net("10.1.0.0/16"), "16");
        map.insert(net("0.0.0.0/0"), "0");
        map.insert(net("2001:db8::/32"), "v6");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let all: Vec<_> = map.matches(ip("10.1.2.3")).copied().collect();
        assert_eq!(all, ["16", "8", "0"]);
        assert_eq!(map.longest(ip("10.2.0.1")), Some(&"8"));
        assert_eq!(map.longest(ip("192.0.2.1")), Some(&"0"));
        assert_eq!(map.longest(ip("::ffff:10.1.0.9")), Some(&"16"));
        assert_eq!(map.longest(ip("2001:db8::1")), Some(&"v6"));
        assert_eq!(map.longest(ip("2001:db9::1")), None);
        assert_eq!(map.insert(net("10.1.0.0/16"), "again"), Some("16"));
    }

    #[test]
    fn entries_and_retain() {
        let mut map = PrefixMap::default();
        map.insert(net("10.1.0.0/16"), "a");
        map.insert(net("192.0.2.7/32"), "b");
        map.insert(net("2001:db8::/32"), "a");
        let mut all: Vec<String> = map.entries().map(|(n, v)| format!("{n} {v}")).collect();
        all.sort();
        assert_eq!(all, ["10.1.0.0/16 a", "192.0.2.7/32 b", "2001:db8::/32 a"]);
        map.retain(|v| *v != "a");
        let left: Vec<String> = map.entries().map(|(n, v)| format!("{n} {v}")).collect();
        assert_eq!(left, ["192.0.2.7/32 b"]);
        let ip = "10.1.2.3".parse::<IpAddr>().expect("ip");
        assert_eq!(map.longest(ip), None);
    }
}
