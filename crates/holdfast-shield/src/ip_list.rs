//! IP lists, an artifact kind (`holdfast check --kind ip-list`): one CIDR (or bare address)
//! per line, `#` comments, a `# version: N` line, read into prefix tries (`prefix-trie`) so
//! that a lookup costs a walk down at most 32 (IPv4) or 128 (IPv6) levels, whatever the size.
//!
//! ```text
//! # version: 1732600000
//! # office and VPN
//! 192.0.2.0/24
//! 2001:db8::/32   # v6 range
//! 198.51.100.7
//! ```
//!
//! Checks, in order: UTF-8; more than [`MAX_ENTRIES`] entries (`Capacity`); each line a
//! CIDR or an address (`Parse`, naming the line); a `version` line with N ≥ 1 (`Schema`
//! when missing, `Range` for 0); at least one entry (`Empty`: an empty allow list used as
//! `!(... in ...)` would refuse everyone).

use holdfast_artifact::{text, ArtifactKind, Reason, Rejection};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixSet;
use std::net::IpAddr;

/// Most entries a list may hold.
pub const MAX_ENTRIES: usize = 1_000_000;

/// The IP list kind.
pub struct IpListKind;

/// A loaded list: its version and one prefix trie per address family.
#[derive(Debug)]
pub struct IpSet {
    version: u64,
    entries: usize,
    v4: PrefixSet<Ipv4Net>,
    v6: PrefixSet<Ipv6Net>,
}

impl IpSet {
    /// Whether some entry covers `ip` (an IPv4-mapped IPv6 address is looked up as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.v4.get_spm(&Ipv4Net::from(a)).is_some(),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.v4.get_spm(&Ipv4Net::from(v4)).is_some(),
                None => self.v6.get_spm(&Ipv6Net::from(a)).is_some(),
            },
        }
    }

    pub fn entries(&self) -> usize {
        self.entries
    }
}

impl ArtifactKind for IpListKind {
    type Value = IpSet;
    const NAME: &'static str = "ip-list";
    const MAX_BYTES: u64 = 32 * 1024 * 1024;

    fn load(bytes: &[u8]) -> Result<IpSet, Rejection> {
        parse(text(bytes)?)
    }

    fn version(value: &IpSet) -> u64 {
        value.version
    }

    fn entries(value: &IpSet) -> usize {
        value.entries
    }
}

/// Files one entry. Lookups read an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a
/// dual-stack socket reports for an IPv4 client) as IPv4, so an entry written in that form is
/// filed as the IPv4 prefix it names; a wider IPv6 prefix that covers all of `::ffff:0:0/96`
/// covers every IPv4 address too.
fn insert(set: &mut IpSet, net: IpNet) {
    let n = match net {
        IpNet::V4(n) => {
            set.v4.insert(n);
            return;
        }
        IpNet::V6(n) => n,
    };
    if let (Some(v4), true) = (n.network().to_ipv4_mapped(), n.prefix_len() >= 96) {
        if let Ok(n4) = Ipv4Net::new(v4, n.prefix_len() - 96) {
            set.v4.insert(n4);
            return;
        }
    }
    if n.contains(&MAPPED_SPACE) {
        set.v4.insert(Ipv4Net::default());
    }
    set.v6.insert(n);
}

/// `::ffff:0:0/96`, where IPv4-mapped addresses live.
const MAPPED_SPACE: Ipv6Net =
    Ipv6Net::new_assert(std::net::Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96);

/// The list's text to a set (see the module's doc for the checks).
pub fn parse(text: &str) -> Result<IpSet, Rejection> {
    let mut set = IpSet {
        version: 0,
        entries: 0,
        v4: PrefixSet::new(),
        v6: PrefixSet::new(),
    };
    let mut version = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let (entry, comment) = match raw.split_once('#') {
            Some((e, c)) => (e.trim(), Some(c.trim())),
            None => (raw.trim(), None),
        };
        if entry.is_empty() {
            if let Some(v) = comment.and_then(|c| c.strip_prefix("version:")) {
                let n = v.trim().parse::<u64>().map_err(|_| {
                    Rejection::new(
                        Reason::Parse,
                        format!(
                            "line {line}: {:?} is not a version; write `# version: N` with N a \
                             whole number (e.g. the generation time in unix seconds)",
                            v.trim()
                        ),
                    )
                })?;
                version = Some(n);
            }
            continue;
        }
        if set.entries >= MAX_ENTRIES {
            return Err(Rejection::new(
                Reason::Capacity,
                format!(
                    "line {line}: more than {MAX_ENTRIES} entries; merge ranges into wider \
                     prefixes or split the list"
                ),
            ));
        }
        let net = entry
            .parse::<IpNet>()
            .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| {
                Rejection::new(
                    Reason::Parse,
                    format!(
                        "line {line}: {entry:?} is not a CIDR or an address; write one per line \
                         as 192.0.2.0/24, 2001:db8::/32 or 198.51.100.7 (comments after #)"
                    ),
                )
            })?;
        insert(&mut set, net.trunc());
        set.entries += 1;
    }
    set.version = match version {
        None => {
            return Err(Rejection::new(
                Reason::Schema,
                "no `# version: N` line; add one (N ≥ 1, higher than the active list's, e.g. \
                 the generation time in unix seconds)",
            ))
        }
        Some(0) => {
            return Err(Rejection::new(
                Reason::Range,
                "version: 0 is not a version; use 1 or more, higher than the active list's",
            ))
        }
        Some(n) => n,
    };
    if set.entries == 0 {
        return Err(Rejection::new(
            Reason::Empty,
            "no entries; list at least one CIDR (an empty allow list would match no one)",
        )
        .with_version(set.version));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_list_matches_its_ranges_only() {
        let set = parse(
            "# version: 7\n# office\n192.0.2.0/24\n  2001:db8::/32   # v6\n198.51.100.7\n\n10.1.2.3/8\n",
        )
        .unwrap();
        assert_eq!(IpListKind::version(&set), 7);
        assert_eq!(set.entries(), 4);
        for yes in [
            "192.0.2.1",
            "192.0.2.255",
            "2001:db8::1",
            "198.51.100.7",
            "10.200.0.1",
        ] {
            assert!(set.contains(ip(yes)), "{yes}");
        }
        for no in [
            "192.0.3.1",
            "198.51.100.8",
            "2001:db9::1",
            "11.0.0.1",
            "::1",
        ] {
            assert!(!set.contains(ip(no)), "{no}");
        }
        assert!(set.contains(ip("::ffff:192.0.2.9")), "IPv4-mapped is IPv4");
    }

    #[test]
    fn entries_written_as_ipv4_mapped_match_ipv4_clients() {
        let set = parse(
            "# version: 1
::ffff:192.0.2.0/120
::ffff:198.51.100.7
",
        )
        .unwrap();
        for yes in ["192.0.2.9", "::ffff:192.0.2.200", "198.51.100.7"] {
            assert!(set.contains(ip(yes)), "{yes}");
        }
        for no in ["192.0.3.1", "198.51.100.8", "::192.0.2.9"] {
            assert!(!set.contains(ip(no)), "{no}");
        }
        // A v6 prefix wide enough to hold all of ::ffff:0:0/96 holds every IPv4 client too.
        let all = parse(
            "# version: 1
::/0
",
        )
        .unwrap();
        assert!(all.contains(ip("203.0.113.1")));
        assert!(all.contains(ip("2001:db8::1")));
        let narrow = parse(
            "# version: 1
2001:db8::/32
",
        )
        .unwrap();
        assert!(!narrow.contains(ip("203.0.113.1")));
    }

    #[test]
    fn bad_lists_are_rejected_with_the_line() {
        let r = parse("# version: 1\n192.0.2.0/24\n10.0.0.0/33\n").unwrap_err();
        assert_eq!(r.reason, Reason::Parse);
        assert!(
            r.detail.starts_with("line 3: \"10.0.0.0/33\""),
            "{}",
            r.detail
        );
        let r = parse("192.0.2.0/24\n").unwrap_err();
        assert_eq!(r.reason, Reason::Schema);
        let r = parse("# version: 0\n192.0.2.0/24\n").unwrap_err();
        assert_eq!(r.reason, Reason::Range);
        let r = parse("# version: x\n").unwrap_err();
        assert_eq!(r.reason, Reason::Parse);
        let r = parse("# version: 3\n# nothing\n").unwrap_err();
        assert_eq!(r.reason, Reason::Empty);
    }
}
