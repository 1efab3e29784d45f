//! `Spec`: the configuration exactly as the user wrote it. Only shape lives here; every
//! meaning (addresses, durations > 0, references between tables) is checked in `validate`.

use crate::units::ByteSize;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The whole file. Unknown keys are collected by `parse` (all of them, with their paths)
/// rather than rejected one at a time by `deny_unknown_fields`.
#[derive(Debug, Deserialize)]
pub struct Spec {
    pub edge: EdgeSpec,
    #[serde(default)]
    pub admin: Option<AdminSpec>,
    #[serde(default)]
    pub pools: Vec<PoolSpec>,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    #[serde(default)]
    pub modules: ModulesSpec,
    #[serde(default)]
    pub limits: Vec<LimitSpec>,
    #[serde(default)]
    pub redis: Option<RedisSpec>,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    #[serde(default)]
    pub ip_lists: Vec<NamedFileSpec>,
    #[serde(default)]
    pub rule_lists: Vec<NamedFileSpec>,
    pub challenge: Option<ChallengeSpec>,
    pub dns: Option<DnsSpec>,
    pub fleet: Option<FleetSpec>,
    pub status_page: Option<StatusPageSpec>,
}

/// `[fleet]`: this instance belongs to a fleet whose versions come from etcd.
#[derive(Debug, Deserialize)]
pub struct FleetSpec {
    #[serde(default)]
    pub etcd: Vec<String>,
    pub prefix: Option<String>,
    pub instance: Option<String>,
    pub group: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub heartbeat: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub lease_ttl: Option<Duration>,
    pub rollout: Option<FleetRolloutSpec>,
}

/// `[fleet.rollout]`: defaults of the rollouts this instance's controller runs.
#[derive(Debug, Deserialize)]
pub struct FleetRolloutSpec {
    pub stages: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub bake: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub fast_bake: Option<Duration>,
    pub min_requests: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    pub data_wait: Option<Duration>,
    pub abs_margin: Option<f64>,
    pub rel_margin: Option<f64>,
}

/// `[challenge]`: the self-hosted challenge that `action = "challenge"` rules serve.
#[derive(Debug, Deserialize)]
pub struct ChallengeSpec {
    pub enabled: Option<bool>,
    pub keys: Option<String>,
    pub cookie_name: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub page_ttl: Option<Duration>,
    pub ipv4_prefix: Option<i64>,
    pub ipv6_prefix: Option<i64>,
    pub difficulty: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    pub nojs_wait: Option<Duration>,
    pub fail_policy: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub time_budget: Option<Duration>,
}

/// `[[ip_lists]]`, `[[rule_lists]]`: a named artifact file.
#[derive(Debug, Deserialize)]
pub struct NamedFileSpec {
    pub name: String,
    pub file: String,
}

/// `[dns]`: the authoritative DNS server and its steered names.
#[derive(Debug, Deserialize)]
pub struct DnsSpec {
    pub listen: String,
    #[serde(default)]
    pub zones: Vec<DnsZoneSpec>,
    #[serde(default)]
    pub steered: Vec<SteeredSpec>,
    #[serde(default)]
    pub peers: Vec<String>,
    pub peer_token: Option<String>,
    pub quorum: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    pub peer_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub peer_timeout: Option<Duration>,
}

/// `[[dns.zones]]`: one zone served from an RFC 1035 zone file.
#[derive(Debug, Deserialize)]
pub struct DnsZoneSpec {
    pub origin: String,
    pub file: String,
}

/// `[[dns.steered]]`: a name whose A/AAAA answer is chosen from health-checked pools.
#[derive(Debug, Deserialize)]
pub struct SteeredSpec {
    pub name: String,
    pub policy: Option<String>,
    pub pools: Vec<String>,
    pub weights: Option<Vec<i64>>,
    pub ttl: Option<i64>,
    pub failover_ttl: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    pub hold_down: Option<Duration>,
    pub when_all_down: Option<String>,
    pub max_shrink_percent: Option<i64>,
    /// Pool name → provider hostname: answer a CNAME instead of the pool's addresses.
    #[serde(default)]
    pub cname: BTreeMap<String, String>,
}

/// `[[rules]]`: a CEL expression and what to do when it matches.
#[derive(Debug, Deserialize)]
pub struct RuleSpec {
    pub id: String,
    pub expr: String,
    pub action: String,
    pub status: Option<i64>,
    pub mode: Option<String>,
    pub routes: Option<Vec<String>>,
    /// `action = "challenge"`: leading zero bits of the proof of work.
    pub difficulty: Option<i64>,
    /// `action = "challenge"`: offer the no-JavaScript form.
    pub nojs: Option<bool>,
    /// `set_header`, `remove_header`: the header of the request to the origin.
    pub header: Option<String>,
    /// `set_header`: its value.
    pub value: Option<String>,
    /// `route`: the route whose pools serve the request instead.
    pub route: Option<String>,
    /// `rate_limit`: the `[[limits]]` entry (with `rules_only = true`) to apply.
    pub limit: Option<String>,
}

/// `[redis]`: the Redis that global limits share.
#[derive(Debug, Deserialize)]
pub struct RedisSpec {
    pub url: String,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub sync_interval: Option<Duration>,
}

/// `[[limits]]`: a local rate limit.
#[derive(Debug, Deserialize)]
pub struct LimitSpec {
    pub name: String,
    pub key: String,
    pub requests: i64,
    #[serde(with = "humantime_serde")]
    pub per: Duration,
    pub burst: Option<i64>,
    pub routes: Option<Vec<String>>,
    #[serde(default)]
    pub shadow: bool,
    pub max_keys: Option<i64>,
    pub scope: Option<String>,
    /// Checked only for requests a `rate_limit` rule sends to it.
    #[serde(default)]
    pub rules_only: bool,
}

/// `[modules.*]`: one table per module.
#[derive(Debug, Default, Deserialize)]
pub struct ModulesSpec {
    pub bot: Option<BotSpec>,
}

/// `[modules.bot]`.
#[derive(Debug, Deserialize)]
pub struct BotSpec {
    pub enabled: Option<bool>,
    pub ja4h: Option<bool>,
    pub features: String,
    pub fail_policy: Option<String>,
    pub public_key: Option<String>,
    pub max_shrink_percent: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    pub time_budget: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub report_interval: Option<Duration>,
    #[serde(default)]
    pub breaker: BreakerSpec,
}

/// `[modules.<name>.breaker]`.
#[derive(Debug, Default, Deserialize)]
pub struct BreakerSpec {
    pub error_percent: Option<i64>,
    pub min_requests: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub cooldown: Option<Duration>,
}

#[derive(Debug, Deserialize)]
pub struct EdgeSpec {
    pub listen: Vec<String>,
    #[serde(default)]
    pub tls_listen: Vec<String>,
    #[serde(default)]
    pub tls: Vec<TlsCertSpec>,
    /// `[[edge.acme]]`: certificates Holdfast orders itself (RFC 8555).
    #[serde(default)]
    pub acme: Vec<AcmeSpec>,
    /// UDP addresses for HTTP/3 (QUIC); certificates as for `tls_listen`.
    #[serde(default)]
    pub h3_listen: Vec<String>,
    /// `h3 = { max_streams, idle_timeout, zero_rtt, max_connections_per_ip }`.
    pub h3: Option<H3Spec>,
    pub threads: Option<i64>,
    #[serde(default)]
    pub h2c: bool,
    #[serde(default)]
    pub forwarded: bool,
    pub access_log: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub client_header_timeout: Option<Duration>,
    /// An HTTP/1 connection idle this long gives its buffers back; `0s`: never.
    #[serde(default, with = "humantime_serde")]
    pub idle_release_after: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub shutdown_grace: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub drain_timeout: Option<Duration>,
    pub max_header_bytes: Option<ByteSize>,
    pub max_headers: Option<i64>,
    pub max_request_body: Option<ByteSize>,
    pub request_buffer: Option<ByteSize>,
    pub state_dir: Option<String>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    pub client_ip_header: Option<String>,
    #[serde(default)]
    pub proxy_protocol: bool,
    pub max_connections: Option<i64>,
    pub encoded_slashes: Option<String>,
    /// The request header a verified client certificate's subject is sent to origins in.
    pub client_cert_header: Option<String>,
    pub session_tickets: Option<SessionTicketsSpec>,
    /// OCSP stapling for certificates with a responder (default true).
    pub ocsp_stapling: Option<bool>,
}

/// `[edge] h3`: the HTTP/3 listeners' QUIC settings.
#[derive(Debug, Default, Deserialize)]
pub struct H3Spec {
    pub max_streams: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    pub zero_rtt: Option<bool>,
    pub max_connections_per_ip: Option<i64>,
}

/// `[[edge.acme]]`: one certificate for a set of names, ordered from an ACME server.
#[derive(Debug, Deserialize)]
pub struct AcmeSpec {
    #[serde(default)]
    pub domains: Vec<String>,
    pub contact: Option<String>,
    pub directory: Option<String>,
    pub challenge: Option<String>,
    pub ca_file: Option<String>,
    /// As on `[[edge.tls]]`: client certificates and policy for these names.
    pub client_auth: Option<String>,
    pub client_ca: Option<String>,
    pub min_version: Option<String>,
    pub cipher_suites: Option<Vec<String>>,
    pub kx_groups: Option<Vec<String>>,
}

/// The keys an `[[edge.tls]]` and an `[[edge.acme]]` table share: what a TLS *site* asks of
/// its clients (`client_auth`, `client_ca`) and its policy.
pub struct SiteKeys<'a> {
    pub client_auth: Option<&'a str>,
    pub client_ca: Option<&'a str>,
    pub min_version: Option<&'a str>,
    pub cipher_suites: Option<&'a [String]>,
    pub kx_groups: Option<&'a [String]>,
}

impl TlsCertSpec {
    pub fn site_keys(&self) -> SiteKeys<'_> {
        SiteKeys {
            client_auth: self.client_auth.as_deref(),
            client_ca: self.client_ca.as_deref(),
            min_version: self.min_version.as_deref(),
            cipher_suites: self.cipher_suites.as_deref(),
            kx_groups: self.kx_groups.as_deref(),
        }
    }
}

impl AcmeSpec {
    pub fn site_keys(&self) -> SiteKeys<'_> {
        SiteKeys {
            client_auth: self.client_auth.as_deref(),
            client_ca: self.client_ca.as_deref(),
            min_version: self.min_version.as_deref(),
            cipher_suites: self.cipher_suites.as_deref(),
            kx_groups: self.kx_groups.as_deref(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct TlsCertSpec {
    #[serde(default)]
    pub names: Vec<String>,
    pub cert: String,
    pub key: String,
    /// `"require"` or `"optional"`: ask clients of these names for a certificate.
    pub client_auth: Option<String>,
    /// PEM file of the CAs whose client certificates are accepted.
    pub client_ca: Option<String>,
    pub min_version: Option<String>,
    pub cipher_suites: Option<Vec<String>>,
    pub kx_groups: Option<Vec<String>>,
}

/// `edge.session_tickets`: stateless TLS session resumption.
#[derive(Debug, Deserialize)]
pub struct SessionTicketsSpec {
    pub enabled: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    pub rotate: Option<Duration>,
}

#[derive(Debug, Deserialize)]
pub struct AdminSpec {
    pub listen: String,
    /// A file holding the admin bearer token; unset: no authentication.
    pub token_file: Option<String>,
    /// TLS on the admin listener: certificate chain and key (PEM).
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    /// CA (PEM) whose client certificates alone may connect; needs `tls_cert` and `tls_key`.
    pub client_ca: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PoolSpec {
    pub name: String,
    pub servers: Vec<ServerSpec>,
    pub balance: Option<String>,
    pub hash_key: Option<String>,
    pub host_header: Option<String>,
    #[serde(default)]
    pub http2: bool,
    pub tls: Option<UpstreamTlsSpec>,
    pub max_idle_per_server: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    #[serde(default)]
    pub retry: RetrySpec,
    #[serde(default)]
    pub outlier: OutlierSpec,
    pub max_concurrent: Option<i64>,
    pub max_queued: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    pub retry_after: Option<Duration>,
    pub max_connections: Option<i64>,
    pub panic_threshold: Option<i64>,
    pub health: Option<HealthSpec>,
}

/// `[pools.health]`: active checks.
#[derive(Debug, Deserialize)]
pub struct HealthSpec {
    pub kind: Option<String>,
    pub path: Option<String>,
    pub expect: Option<String>,
    pub host: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    pub healthy_after: Option<i64>,
    pub unhealthy_after: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct OutlierSpec {
    pub consecutive_failures: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    pub base_ejection: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub max_ejection: Option<Duration>,
    pub max_ejection_percent: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RetrySpec {
    pub attempts: Option<i64>,
    pub on: Option<Vec<String>>,
    #[serde(default)]
    pub non_idempotent: bool,
    pub budget_percent: Option<i64>,
    pub min_per_second: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    pub budget_window: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub backoff: Option<Duration>,
    pub buffer_body: Option<ByteSize>,
}

#[derive(Debug, Deserialize)]
pub struct UpstreamTlsSpec {
    pub sni: Option<String>,
    pub ca_file: Option<String>,
    #[serde(default = "yes")]
    pub verify: bool,
    /// Certificate chain and key (PEM) presented to the origins (authenticated origin pulls).
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
pub struct RouteSpec {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: MatchSpec,
    pub pool: Option<String>,
    pub pools: Option<Vec<String>>,
    pub fallback: Option<FallbackSpec>,
    /// A failing challenge never locks this route (log-in pages, the dashboard).
    #[serde(default)]
    pub critical: bool,
    /// Advertise HTTP/3 (`Alt-Svc`) on this route's TLS responses; default true.
    pub alt_svc: Option<bool>,
    /// Read a request body whole (up to `edge.request_buffer`) before the origin sees the
    /// request; default true.
    pub request_buffering: Option<bool>,
    #[serde(default)]
    pub timeouts: TimeoutsSpec,
    #[serde(default)]
    pub request_headers: HeaderOpsSpec,
    #[serde(default)]
    pub response_headers: HeaderOpsSpec,
    #[serde(default)]
    pub cache: Option<CacheSpec>,
}

/// `routes[].cache`: the shared HTTP cache for this route.
#[derive(Debug, Deserialize, Default)]
pub struct CacheSpec {
    pub enabled: Option<bool>,
    pub memory: Option<ByteSize>,
    pub max_object_size: Option<ByteSize>,
    pub heuristic: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    pub serve_stale_on_error: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub lock_timeout: Option<Duration>,
    pub targeted_field: Option<String>,
    #[serde(default)]
    pub key: CacheKeySpec,
    pub disk: Option<CacheDiskSpec>,
}

/// `routes[].cache.disk`: the optional disk tier.
#[derive(Debug, Deserialize)]
pub struct CacheDiskSpec {
    pub path: String,
    pub size: Option<ByteSize>,
}

/// `routes[].cache.key`: what makes two requests the same object.
#[derive(Debug, Deserialize, Default)]
pub struct CacheKeySpec {
    pub host: Option<bool>,
    pub query: Option<String>,
    #[serde(default)]
    pub ignore_query: Vec<String>,
    #[serde(default)]
    pub headers: Vec<String>,
}

/// `fallback = { status = 503, file = "maintenance.html" }`.
#[derive(Debug, Deserialize)]
pub struct FallbackSpec {
    pub status: Option<i64>,
    pub file: String,
    pub content_type: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub retry_after: Option<Duration>,
}

#[derive(Debug, Deserialize)]
pub struct MatchSpec {
    pub path_prefix: Option<String>,
    pub host: Option<OneOrMany>,
}

/// `host = "a.example"` or `host = ["a.example", "*.b.example"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn as_slice(&self) -> &[String] {
        match self {
            OneOrMany::One(s) => std::slice::from_ref(s),
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct TimeoutsSpec {
    #[serde(default, with = "humantime_serde")]
    pub connect: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub read: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub total: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
pub struct HeaderOpsSpec {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A server: `"host:port"`, or `{ address = "host:port", weight = 3 }`.
#[derive(Debug)]
pub enum ServerSpec {
    Addr(String),
    Table(ServerTable),
}

#[derive(Debug, Deserialize)]
pub struct ServerTable {
    pub address: String,
    pub weight: Option<i64>,
}

impl ServerSpec {
    pub fn address(&self) -> &str {
        match self {
            ServerSpec::Addr(a) => a,
            ServerSpec::Table(t) => &t.address,
        }
    }

    pub fn weight(&self) -> Option<i64> {
        match self {
            ServerSpec::Addr(_) => None,
            ServerSpec::Table(t) => t.weight,
        }
    }
}

// By hand rather than `untagged`: the table form is read through the caller's map access, so
// unknown keys in it are reported with their paths like everywhere else.
impl<'de> Deserialize<'de> for ServerSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ServerSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"host:port\" or { address = \"host:port\", weight = N }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ServerSpec, E> {
                Ok(ServerSpec::Addr(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<ServerSpec, A::Error> {
                ServerTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(ServerSpec::Table)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `[status_page]`: the public status page.
#[derive(Debug, Deserialize)]
pub struct StatusPageSpec {
    pub listen: String,
    pub title: Option<String>,
    pub export_dir: Option<String>,
    pub export_put: Option<String>,
    pub export_ca_file: Option<String>,
    #[serde(default)]
    pub components: Vec<ComponentSpec>,
}

/// `[[status_page.components]]`.
#[derive(Debug, Deserialize)]
pub struct ComponentSpec {
    pub name: String,
    #[serde(default)]
    pub routes: Vec<String>,
    #[serde(default)]
    pub pools: Vec<String>,
    #[serde(default)]
    pub dns: Vec<String>,
}
