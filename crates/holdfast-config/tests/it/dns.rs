//! `[dns]`: the interface block is accepted as written (zone paths relative to the config
//! file's folder, default TCP checks for steered pools), and each mistake is reported with
//! its key path.

use crate::{accept, check_each, file_with};
use expect_test::expect;
use holdfast_config::{CheckKind, SteerPolicy, WhenAllDown};
use std::path::Path;
use std::time::Duration;

fn with_dns(dns: &str) -> String {
    format!(
        "{}\n[[pools]]\nname = \"secondary\"\nservers = [\"127.0.0.3:9000\"]\n[pools.health]\nkind = \"tcp\"\ninterval = \"1s\"\n\n{dns}",
        file_with("", "", "")
    )
}

const INTERFACE: &str = r#"
[dns]
listen = "127.0.0.1:5353"            # UDP and TCP

[[dns.zones]]
origin = "example.test."
file = "example.test.zone"           # RFC 1035 zone file, relative to the config file's folder

[[dns.steered]]
name = "www.example.test."
policy = "failover"
pools = ["primary", "secondary"]     # pools from the upstream config; answers are their servers' IPs
ttl = 30
"#;

#[test]
fn the_interface_block_is_accepted_as_written() {
    let config = accept(&with_dns(INTERFACE));
    let dns = config.dns.unwrap();
    assert_eq!(dns.listen.to_string(), "127.0.0.1:5353");
    assert_eq!(dns.zones[0].origin, "example.test.");
    assert_eq!(
        dns.zones[0].file,
        Path::new(crate::BASE_DIR).join("example.test.zone")
    );
    let s = &dns.steered[0];
    assert_eq!(s.name, "www.example.test.");
    assert_eq!(s.policy, SteerPolicy::Failover);
    assert_eq!(s.pools, ["primary", "secondary"]);
    assert_eq!((s.ttl, s.failover_ttl), (30, 10));
    assert_eq!(s.when_all_down, WhenAllDown::LastHealthy);
    assert_eq!(s.hold_down, Duration::from_secs(30));
    assert_eq!(s.cnames, [None, None]);
    // The primary has no [pools.health]: steering gives it a TCP check; the secondary keeps its own.
    let primary = config.pools.iter().find(|p| p.name == "primary").unwrap();
    assert_eq!(primary.health.as_ref().unwrap().kind, CheckKind::Tcp);
    let secondary = config.pools.iter().find(|p| p.name == "secondary").unwrap();
    assert_eq!(
        secondary.health.as_ref().unwrap().interval,
        Duration::from_secs(1)
    );
}

#[test]
fn no_dns_table_no_dns_and_no_extra_checks() {
    let config = accept(&file_with("", "", ""));
    assert!(config.dns.is_none());
    assert!(config.pools[0].health.is_none());
}

#[test]
fn each_dns_mistake_is_reported_with_its_key_path() {
    let base = |steered: &str| {
        with_dns(&format!(
            "[dns]\nlisten = \"127.0.0.1:5353\"\n[[dns.zones]]\norigin = \"example.test.\"\nfile = \"z\"\n[[dns.steered]]\n{steered}\n"
        ))
    };
    check_each(
        base,
        &[
            "name = \"www.example.test.\"\npools = [\"nope\"]",
            "name = \"www.example.test.\"\npools = []",
            "name = \"www.example.test.\"\npools = [\"primary\"]\nttl = 0",
            "name = \"www.example.test.\"\npools = [\"primary\"]\nttl = 30\nfailover_ttl = 60",
            "name = \"www..example.test.\"\npools = [\"primary\"]",
            "name = \"www.other.test.\"\npools = [\"primary\"]",
            "name = \"www.example.test.\"\npools = [\"primary\", \"primary\"]",
            "name = \"www.example.test.\"\npolicy = \"random\"\npools = [\"primary\"]",
            "name = \"www.example.test.\"\npolicy = \"weighted\"\npools = [\"primary\", \"secondary\"]\nweights = [1]",
            "name = \"www.example.test.\"\npools = [\"primary\"]\nwhen_all_down = \"nothing\"",
            "name = \"www.example.test.\"\npolicy = \"all-healthy\"\npools = [\"primary\", \"secondary\"]\ncname = { secondary = \"edge.cdn.example.\", nope = \"bad name\" }",
        ],
        expect![[r#"
            name = "www.example.test."
            pools = ["nope"]
                dns.steered[0].pools[0]: unknown pool "nope" (name a pool defined in a [[pools]] table)
            name = "www.example.test."
            pools = []
                dns.steered[0].pools: no pools (name at least one pool whose servers answer for this name, e.g. pools = ["primary", "secondary"])
            name = "www.example.test."
            pools = ["primary"]
            ttl = 0
                dns.steered[0].ttl: ttl 0 is out of range (use 1 to 604800 seconds (a week))
            name = "www.example.test."
            pools = ["primary"]
            ttl = 30
            failover_ttl = 60
                dns.steered[0].failover_ttl: failover_ttl 60 is longer than ttl 30 (a name in failover should be cached for less time, not more)
            name = "www..example.test."
            pools = ["primary"]
                dns.steered[0].name: invalid DNS name "www..example.test." (write a name such as "www.example.test.": labels of letters, digits, '-' or '_', at most 63 bytes each)
            name = "www.other.test."
            pools = ["primary"]
                dns.steered[0].name: "www.other.test." is in no configured zone (add a [[dns.zones]] table whose origin contains the name)
            name = "www.example.test."
            pools = ["primary", "primary"]
                dns.steered[0].pools[1]: pool "primary" is listed twice (list each pool once)
            name = "www.example.test."
            policy = "random"
            pools = ["primary"]
                dns.steered[0].policy: unknown policy "random" (use "failover", "weighted" or "all-healthy")
            name = "www.example.test."
            policy = "weighted"
            pools = ["primary", "secondary"]
            weights = [1]
                dns.steered[0].weights: 1 weights for 2 pools (give one weight per pool, in the order of pools)
            name = "www.example.test."
            pools = ["primary"]
            when_all_down = "nothing"
                dns.steered[0].when_all_down: unknown choice "nothing" (use "last-healthy" or "all")
            name = "www.example.test."
            policy = "all-healthy"
            pools = ["primary", "secondary"]
            cname = { secondary = "edge.cdn.example.", nope = "bad name" }
                dns.steered[0].cname: CNAME targets need the failover or weighted policy (all-healthy answers several pools at once, and a CNAME cannot stand beside addresses: remove cname or change the policy)
                dns.steered[0].cname.nope: "nope" is not in this name's pools (key cname by one of the pools listed in pools)
        "#]],
    );
}

#[test]
fn bad_listen_zone_origin_and_overlap_are_reported() {
    check_each(
        |dns: &str| with_dns(dns),
        &[
            "[dns]\nlisten = \"localhost:53\"",
            "[dns]\nlisten = \"127.0.0.1:5353\"\npeers = [\"https://10.0.0.2:9901\", \"http://10.0.0.3:9901/x\", \"http://10.0.0.4:9901\"]\nquorum = 5",
            "[dns]\nlisten = \"127.0.0.1:5353\"\npeer_interval = \"0s\"",
            "[dns]\nlisten = \"127.0.0.1:8080\"",
            "[dns]\nlisten = \"127.0.0.1:5353\"\n[[dns.zones]]\norigin = \"bad name.\"\nfile = \"z\"",
            "[dns]\nlisten = \"127.0.0.1:5353\"\n[[dns.zones]]\norigin = \"a.test.\"\nfile = \"\"\n[[dns.zones]]\norigin = \"A.test\"\nfile = \"z\"",
        ],
        expect![[r#"
            [dns]
            listen = "localhost:53"
                dns.listen: invalid listen address "localhost:53" (write an IP address and port, e.g. "127.0.0.1:8080" or "[::1]:8080")
            [dns]
            listen = "127.0.0.1:5353"
            peers = ["https://10.0.0.2:9901", "http://10.0.0.3:9901/x", "http://10.0.0.4:9901"]
            quorum = 5
                dns.peers[0]: invalid peer "https://10.0.0.2:9901" (write the peer's admin address as "http://HOST:PORT" (HTTPS is not supported yet))
                dns.peers[1]: invalid peer "http://10.0.0.3:9901/x" (write the peer's admin address as "http://HOST:PORT" (HTTPS is not supported yet))
                dns.peer_token: peers are listed but no peer_token is set (set the same secret peer_token on every instance; peers present it as a bearer token)
                dns.quorum: quorum 5 is out of range (use 1 to 2 (the peers and this instance); leave it out for a majority (2))
            [dns]
            listen = "127.0.0.1:5353"
            peer_interval = "0s"
                dns.peer_interval: 0s is out of range (use 10ms to 10m)
            [dns]
            listen = "127.0.0.1:8080"
                dns.listen: 127.0.0.1:8080 is also the data listener edge.listen[0] (give the DNS server an address of its own)
            [dns]
            listen = "127.0.0.1:5353"
            [[dns.zones]]
            origin = "bad name."
            file = "z"
                dns.zones[0].origin: invalid DNS name "bad name." (write a name such as "www.example.test.": labels of letters, digits, '-' or '_', at most 63 bytes each)
            [dns]
            listen = "127.0.0.1:5353"
            [[dns.zones]]
            origin = "a.test."
            file = ""
            [[dns.zones]]
            origin = "A.test"
            file = "z"
                dns.zones[0].file: empty path (give the path of an RFC 1035 zone file, relative to this config file's folder)
                dns.zones[1].origin: zone "a.test." is configured twice (list each zone once)
        "#]],
    );
}
