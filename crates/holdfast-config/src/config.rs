//! `Config`: the validated, typed configuration the runtime is built from. Every value here
//! has passed `validate`; references between tables are indices, not names.

use http::{HeaderName, HeaderValue};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    pub edge: Edge,
    pub admin: Admin,
    pub pools: Vec<Pool>,
    pub routes: Vec<Route>,
    pub modules: Modules,
    pub limits: Vec<Limit>,
    /// `[redis]`: where global limits are counted; `None` when not configured.
    pub redis: Option<Redis>,
    /// `[[rules]]`, in file order.
    pub rules: Vec<Rule>,
    /// `[dns]`: the authoritative DNS server; `None` when not configured.
    pub dns: Option<Dns>,
    /// `[[ip_lists]]`, in file order.
    pub ip_lists: Vec<IpList>,
    /// `[[rule_lists]]`, in file order (their rules run in this order, after `[[rules]]`).
    pub rule_lists: Vec<RuleList>,
    /// `[challenge]` (defaults when absent); used when a rule's action is `challenge`.
    pub challenge: Challenge,
    /// `[fleet]`: set when this instance's configuration comes from a fleet (etcd).
    pub fleet: Option<Fleet>,
    /// `[admin] token_file`: who may use the admin plane (open when unset).
    pub admin_auth: AdminAuth,
    /// `[status_page]`: the public status page; `None` when not configured.
    pub status_page: Option<StatusPage>,
}

/// `[status_page]`: a public page of components and incidents, on its own listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPage {
    pub listen: SocketAddr,
    pub title: String,
    /// Where `index.html` and `status.json` are written after every change.
    pub export_dir: Option<PathBuf>,
    /// An `http://` or `https://` URL (ending in `/`) the snapshot is `PUT` to (`index.html`,
    /// `status.json`).
    pub export_put: Option<String>,
    /// The CAs an `https://` `export_put` is checked against (PEM); the system's when `None`.
    pub export_ca_file: Option<PathBuf>,
    pub components: Vec<Component>,
}

/// A component of the status page and what its state is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    pub routes: Vec<String>,
    pub pools: Vec<String>,
    /// Steered names, lower case with the final dot (as `/status` shows them).
    pub dns: Vec<String>,
}

/// Authentication of the admin plane. The file is read by the binary at start (this crate
/// does no I/O); its content, trimmed, is the bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdminAuth {
    pub token_file: Option<PathBuf>,
    /// TLS on the admin listener (`[admin] tls_cert`, `tls_key`, `client_ca`).
    pub tls: Option<AdminTls>,
}

/// The admin listener's TLS: its certificate and key, and the CA whose client certificates
/// alone may connect (none: any client may, as over plain HTTP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// `[fleet]`: where the fleet's state lives and who this instance is in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    /// etcd endpoints (`http://host:port`).
    pub etcd: Vec<String>,
    /// Key prefix, without a trailing `/`.
    pub prefix: String,
    /// This instance's unique id; `None`: the host name (read by the binary: no I/O here).
    pub instance: Option<String>,
    pub group: Option<String>,
    /// How often the instance reports and the controller ticks.
    pub heartbeat: Duration,
    /// The instance's lease: it is gone from the fleet this long after its last heartbeat.
    pub lease_ttl: Duration,
    pub rollout: FleetRollout,
}

/// `[fleet.rollout]`: defaults of a rollout when `holdfast rollout start` does not set them.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetRollout {
    /// Checked: group names or `N%`, the last one `100%`.
    pub stages: Vec<String>,
    pub bake: Duration,
    pub fast_bake: Duration,
    pub min_requests: u64,
    pub data_wait: Duration,
    pub abs_margin: f64,
    pub rel_margin: f64,
}

impl Config {
    /// The names of the routes at `indices`: module kinds compare their settings by route
    /// names, not positions, so a reload that only moves routes keeps their state.
    pub fn route_names(&self, indices: &[usize]) -> Vec<String> {
        indices
            .iter()
            .filter_map(|i| self.routes.get(*i).map(|r| r.name.clone()))
            .collect()
    }
}

/// `[challenge]`: the challenge served by the edge itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub enabled: bool,
    /// Key file (one or two hex keys); `None`: a key generated at start (kept in
    /// `edge.state_dir` when set).
    pub keys: Option<PathBuf>,
    pub cookie_name: String,
    /// How long a pass cookie lasts.
    pub ttl: Duration,
    /// How long a challenge page can be answered.
    pub page_ttl: Duration,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Default proof-of-work difficulty (leading zero bits) of challenge rules.
    pub difficulty: u8,
    /// The server-enforced wait of the no-JavaScript form.
    pub nojs_wait: Duration,
    /// When the challenge module fails, on routes not marked `critical` (those pass).
    pub fail_policy: FailPolicy,
    pub time_budget: Duration,
}

/// An IP list (`[[ip_lists]]`): an artifact file of CIDRs that rules read by name.
pub type IpList = NamedFile;
/// A rule list (`[[rule_lists]]`): an artifact file of rules run after `[[rules]]`.
pub type RuleList = NamedFile;

/// A named artifact file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedFile {
    pub name: String,
    /// Resolved against the config file's folder.
    pub file: std::path::PathBuf,
}

/// `[dns]`: listener (UDP and TCP on one address), zones and steered names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    pub listen: SocketAddr,
    pub zones: Vec<DnsZone>,
    pub steered: Vec<Steered>,
    /// Other instances' admin planes (`http://host:port`) whose checks vote with ours.
    pub peers: Vec<String>,
    /// Bearer token peers present (and we present) on `GET /dns/peer`.
    pub peer_token: Option<String>,
    /// Vantage points (this one included) that must see a target down for it to be down;
    /// capped at the number of vantage points currently heard from.
    pub quorum: usize,
    pub peer_interval: Duration,
    pub peer_timeout: Duration,
}

/// A zone: its origin (lower case, with the final dot) and its zone file (absolute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsZone {
    pub origin: String,
    pub file: PathBuf,
}

/// A steered name: its answers come from `policy` over the servers of `pools`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Steered {
    /// Lower case, with the final dot.
    pub name: String,
    /// Index into `Dns::zones` of the zone the name belongs to.
    pub zone: usize,
    pub policy: SteerPolicy,
    /// Pool names, in order; each is a pool of `Config::pools` with active health checks.
    pub pools: Vec<String>,
    /// One weight per pool (`weighted`); all 1 otherwise.
    pub weights: Vec<u32>,
    pub ttl: u32,
    /// TTL while the answer is not the first choice (failover, or the all-down fallback).
    pub failover_ttl: u32,
    /// How long a target must stay healthy before it is answered again.
    pub hold_down: Duration,
    pub when_all_down: WhenAllDown,
    /// At most this share of the answer set is removed in one step.
    pub max_shrink_percent: u32,
    /// Per pool (same order as `pools`): a provider hostname (lower case, final dot) to
    /// answer as a CNAME when that pool is chosen; `None`: the pool's server addresses.
    pub cnames: Vec<Option<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SteerPolicy {
    /// The healthy servers of the first pool that has one.
    Failover,
    /// One pool per answer, chosen by weight among the pools that have a healthy server.
    Weighted,
    /// Every healthy server of every pool (multi-value).
    AllHealthy,
}

impl SteerPolicy {
    /// The word the config uses for it (`policy = "..."`), also on `/status`.
    pub const fn name(self) -> &'static str {
        match self {
            SteerPolicy::Failover => "failover",
            SteerPolicy::Weighted => "weighted",
            SteerPolicy::AllHealthy => "all-healthy",
        }
    }
}

/// What a steered name answers when no target is healthy: never nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenAllDown {
    /// The last set that was answered while something was healthy.
    LastHealthy,
    /// Every target of every pool.
    All,
}

/// A rule (`[[rules]]`): its expression compiled at load, evaluated per request in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    /// CEL source; it compiled and uses only known variables and functions.
    pub expr: String,
    pub action: RuleAction,
    /// `log`: count hits, act on none (shadow).
    pub mode: RuleMode,
    /// The request fields the expression reads (the rest are not built per request).
    pub fields: RuleFields,
    /// Indices into `Config::routes`; empty: every route.
    pub routes: Vec<usize>,
    /// `set_header` / `remove_header`: the header the origin request gets or loses.
    pub header: Option<RuleHeader>,
    /// `route`: the name of the route (in `Config::routes`) that serves the request instead.
    pub route: Option<String>,
    /// `rate_limit`: the name of the `[[limits]]` entry (`rules_only`) to apply.
    pub limit: Option<String>,
}

/// The header a `set_header` (with a value) or `remove_header` (without) rule edits: a valid
/// lower-case name, a valid value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleHeader {
    pub name: String,
    pub value: Option<String>,
}

/// Which request fields a rule's expression refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RuleFields {
    pub method: bool,
    pub path: bool,
    pub host: bool,
    pub query: bool,
    pub headers: bool,
    pub cookies: bool,
    pub client_ip: bool,
    /// `request.ja4h`: the JA4H-style fingerprint (hashed per request only when read).
    pub ja4h: bool,
    /// `bot.score`: the bot module then runs before the rules.
    pub bot: bool,
    /// `client.rate`: the rules module then counts each request per client address.
    pub rate: bool,
}

impl RuleFields {
    /// Both sets.
    pub fn union(self, o: RuleFields) -> RuleFields {
        RuleFields {
            method: self.method || o.method,
            path: self.path || o.path,
            host: self.host || o.host,
            query: self.query || o.query,
            headers: self.headers || o.headers,
            cookies: self.cookies || o.cookies,
            client_ip: self.client_ip || o.client_ip,
            ja4h: self.ja4h || o.ja4h,
            bot: self.bot || o.bot,
            rate: self.rate || o.rate,
        }
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// Answer with this status (400..=599, default 403).
    Block { status: u16 },
    /// Skip the remaining rules.
    Allow,
    /// Count only.
    Log,
    /// Serve the challenge unless the client has a valid pass cookie.
    Challenge { difficulty: u8, nojs: bool },
    /// Set a header on the request to the origin (`Rule::header`); later rules still run.
    SetHeader,
    /// Remove a header from the request to the origin (`Rule::header`); later rules still run.
    RemoveHeader,
    /// Send the request to another route's pools (`Rule::route`); later rules still run, the
    /// first matching `route` rule wins.
    Route,
    /// Check the request against a `rules_only` limit (`Rule::limit`): 429 when over it;
    /// later rules still run.
    RateLimit,
}

impl RuleAction {
    /// The `action` metric label.
    pub fn label(&self) -> &'static str {
        match self {
            RuleAction::Block { .. } => "block",
            RuleAction::Allow => "allow",
            RuleAction::Log => "log",
            RuleAction::Challenge { .. } => "challenge",
            RuleAction::SetHeader => "set_header",
            RuleAction::RemoveHeader => "remove_header",
            RuleAction::Route => "route",
            RuleAction::RateLimit => "rate_limit",
        }
    }
}

/// Whether a rule acts or only counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuleMode {
    #[default]
    Enforce,
    Log,
}

/// `[redis]`: the Redis that `scope = "global"` limits share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redis {
    /// `redis://HOST:PORT` or `unix:///path/redis.sock`, as written.
    pub url: String,
    /// The longest one call (connect, or one pipelined round trip) may take.
    pub timeout: Duration,
    /// How often each instance sends its pending counts.
    pub sync_interval: Duration,
}

/// Where a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LimitScope {
    /// Each instance on its own (GCRA).
    #[default]
    Local,
    /// Shared by every instance through `[redis]` (fixed window, pre-aggregated).
    Global,
}

/// A local rate limit (`[[limits]]`): GCRA, `requests` per `per` with `burst`, per key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub name: String,
    pub key: LimitKey,
    pub requests: u32,
    pub per: Duration,
    pub burst: u32,
    /// Indices into `Config::routes`; empty: every route.
    pub routes: Vec<usize>,
    /// Count what would be limited, limit nothing.
    pub shadow: bool,
    /// Keys tracked at once (memory bound).
    pub max_keys: usize,
    /// `local` (default) or `global` (through `[redis]`).
    pub scope: LimitScope,
    /// Checked only for requests a `rate_limit` rule sends to it (never by route).
    pub rules_only: bool,
}

/// What a rate limit counts by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    ClientIp,
    /// IPv4: the address; IPv6: its /64.
    ClientPrefix,
    Header(HeaderName),
    Cookie(String),
    Route,
}

/// The per-request decision modules that are configured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Modules {
    pub bot: Option<BotModule>,
}

/// `[modules.bot]`: bot scoring from a feature file.
#[derive(Debug, Clone, PartialEq)]
pub struct BotModule {
    pub enabled: bool,
    /// `ja4h_browser_like` and `request.ja4h` are computed (off by default: JA4H is under the
    /// FoxIO License 1.1).
    pub ja4h: bool,
    /// The feature file (resolved against the config file's folder).
    pub features: PathBuf,
    pub fail_policy: FailPolicy,
    /// Base64 ed25519 public key; when set, the feature file needs a valid `.sig`.
    pub public_key: Option<String>,
    pub max_shrink_percent: u32,
    pub time_budget: Duration,
    pub report_interval: Duration,
    pub breaker: Breaker,
}

/// What a module's failure means for the request (`fail_policy`); also the module runner's
/// type (`holdfast_modules::FailPolicy` is this one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPolicy {
    /// Treat as no decision (the bot score becomes `unknown`).
    Open,
    /// Deny the request (the edge answers 403, never a 5xx).
    Closed,
    /// Reuse the last good decision for the same key; without one, as `Open`.
    Stale,
}

impl FailPolicy {
    /// The config and `/status` spelling: `open`, `closed`, `stale`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailPolicy::Open => "open",
            FailPolicy::Closed => "closed",
            FailPolicy::Stale => "stale",
        }
    }
}

impl serde::Serialize for FailPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A module's circuit breaker: trips into the fail policy when errors pass a share of calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    pub error_percent: u32,
    pub min_requests: u32,
    pub window: Duration,
    pub cooldown: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub listen: Vec<SocketAddr>,
    pub tls_listen: Vec<SocketAddr>,
    pub tls: Vec<TlsCert>,
    /// Certificates ordered from an ACME server (`[[edge.acme]]`), one per name set.
    pub acme: Vec<AcmeCert>,
    /// UDP addresses served with HTTP/3 over QUIC (certificates as for `tls_listen`).
    pub h3_listen: Vec<SocketAddr>,
    /// QUIC settings of the HTTP/3 listeners.
    pub h3: H3,
    /// Data-path worker threads; `None` means one per core.
    pub threads: Option<usize>,
    /// Accept cleartext HTTP/2 (prior knowledge) on plain listeners.
    pub h2c: bool,
    /// Also send the RFC 7239 `Forwarded` header to origins.
    pub forwarded: bool,
    pub access_log: AccessLog,
    pub limits: Limits,
    pub client_header_timeout: Duration,
    /// An HTTP/1 connection with nothing in flight and no bytes moved for this long gives
    /// back its HTTP state (hyper's buffers, the request future) until its next byte
    /// arrives; zero: it keeps them.
    pub idle_release_after: Duration,
    pub shutdown_grace: Duration,
    /// After a binary upgrade handed the listeners over: how long the old process lets its
    /// open connections finish before it closes them and exits.
    pub drain_timeout: Duration,
    /// Where last-known-good artifacts and operator overrides are kept; `None`: nowhere.
    pub state_dir: Option<PathBuf>,
    /// Peers whose `X-Forwarded-For` names the client (load balancers, another CDN); from
    /// anyone else the socket's address is the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Which header a trusted peer names the client in.
    pub client_ip_header: ClientIpHeader,
    /// Every connection starts with a PROXY protocol (v1 or v2) header, believed only from
    /// a trusted peer.
    pub proxy_protocol: bool,
    /// The header a verified client certificate's subject is sent to origins in (and rules
    /// read); always removed from what clients send. `None`: not sent.
    pub client_cert_header: Option<HeaderName>,
    /// Stateless session resumption on the TLS listeners.
    pub session_tickets: SessionTickets,
    /// OCSP stapling: certificates with an OCSP responder get its answer fetched in the
    /// background, cached in `state_dir` and stapled to handshakes (default on).
    pub ocsp_stapling: bool,
    /// Most client connections open at once, all listeners and workers together; at the cap
    /// the edge stops accepting until one closes (new ones wait in the kernel's backlog).
    pub max_connections: usize,
    /// What a `%2F` or `%5C` in a request path does.
    pub encoded_slashes: EncodedSlashes,
}

/// `edge.encoded_slashes`: an encoded `/` or `\` in a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncodedSlashes {
    /// 400: origins disagree on whether it separates segments (the default).
    #[default]
    Refuse,
    /// Forwarded as it came (still encoded, never decoded by the edge), for applications that
    /// route on encoded slashes; a `.`/`..` piece between encoded slashes is still refused.
    Keep,
}

/// `edge.h3`: limits of the HTTP/3 listeners, applied to each new QUIC connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H3 {
    /// Concurrent request streams a client may open on one connection.
    pub max_streams: u32,
    /// A connection with no packets for this long is closed.
    pub idle_timeout: Duration,
    /// Accept TLS early data (0-RTT) for safe methods.
    pub zero_rtt: bool,
    /// QUIC connections (open or in their handshake) one client address may hold.
    pub max_connections_per_ip: u32,
}

/// The header a trusted proxy names the client in (`edge.client_ip_header`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientIpHeader {
    /// `X-Forwarded-For: client, proxy1`.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for=proxy1`.
    Forwarded,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AccessLog {
    Off,
    Stdout,
    File(PathBuf),
}

/// Request-side limits enforced by the edge before anything reaches an origin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_request_body: u64,
    /// Request bodies up to this size are read whole before the origin is contacted (a body
    /// that fails to frame, stalls or is too large never reaches the origin in part); larger
    /// ones stream. Zero: every body streams.
    pub request_buffer: u64,
}

/// A certificate chain and key for the TLS listeners; no names means the default certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsCert {
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client certificates asked of connections to these names; `None`: not asked.
    pub client_auth: Option<ClientAuth>,
    /// Versions, cipher suites and key-exchange groups for these names.
    pub policy: TlsPolicy,
}

/// `client_auth` and `client_ca` of an `[[edge.tls]]` or `[[edge.acme]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// A connection without a valid certificate is refused (`true`) or served without a
    /// subject (`false`, `"optional"`); an invalid certificate is refused either way.
    pub required: bool,
    /// PEM file of the CAs whose client certificates are accepted.
    pub ca: PathBuf,
}

/// The lowest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    #[default]
    Tls12,
    Tls13,
}

/// A TLS policy: empty lists mean rustls's defaults. Suite and group names are checked
/// against the crypto provider where it is known (`holdfast-proxy`'s `tls::policy`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsPolicy {
    pub min_version: TlsVersion,
    pub cipher_suites: Vec<String>,
    pub kx_groups: Vec<String>,
}

/// `edge.session_tickets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTickets {
    pub enabled: bool,
    /// How long one ticket key issues tickets; a ticket is accepted for twice as long.
    pub rotate: Duration,
}

impl Default for SessionTickets {
    fn default() -> Self {
        SessionTickets {
            enabled: true,
            rotate: Duration::from_secs(12 * 3600),
        }
    }
}

/// Let's Encrypt's production directory: `edge.acme.directory` when not given.
pub const LETS_ENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// `[[edge.acme]]`: one certificate for `domains`, ordered and renewed by the edge, and the
/// TLS site that serves it (client certificates and policy, as on `[[edge.tls]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeCert {
    /// Lower-cased, in the order written; the first is the certificate's subject.
    pub domains: Vec<String>,
    /// E.g. `mailto:ops@example.com`; given to the CA with the account.
    pub contact: Option<String>,
    /// The ACME server's directory URL (https).
    pub directory: String,
    pub challenge: AcmeChallenge,
    /// CA certificates (PEM) trusted for the ACME server's own TLS instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Client certificates asked of connections to these names; `None`: not asked.
    pub client_auth: Option<ClientAuth>,
    /// Versions, cipher suites and key-exchange groups for these names.
    pub policy: TlsPolicy,
}

impl AcmeCert {
    /// Whether `other` orders the same certificate: the same names from the same CA, the
    /// same way (the site's client certificates and policy do not matter to the order).
    pub fn same_order(&self, other: &AcmeCert) -> bool {
        self.domains == other.domains
            && self.contact == other.contact
            && self.directory == other.directory
            && self.challenge == other.challenge
            && self.ca_file == other.ca_file
    }
}

/// How the CA checks that the edge answers for a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcmeChallenge {
    /// `http-01`: `GET /.well-known/acme-challenge/<token>` on port 80 (a plain listener).
    Http01,
    /// `tls-alpn-01`: a TLS handshake with ALPN `acme-tls/1` on port 443 (a TLS listener).
    TlsAlpn01,
}

impl AcmeChallenge {
    pub fn as_str(self) -> &'static str {
        match self {
            AcmeChallenge::Http01 => "http-01",
            AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    pub servers: Vec<ServerAddr>,
    /// One weight per server, in the same order (1 when not given).
    pub weights: Vec<u32>,
    pub balance: Balance,
    pub host_header: Option<HeaderValue>,
    pub http2: bool,
    pub tls: Option<UpstreamTls>,
    pub max_idle_per_server: usize,
    pub idle_timeout: Duration,
    pub retry: RetryPolicy,
    pub outlier: Outlier,
    /// Admission limits; `None` when `max_concurrent` is not set (unlimited).
    pub overload: Option<Overload>,
    /// Requests in flight to one server at once; `None` is unlimited.
    pub max_connections: Option<usize>,
    /// Sent as `Retry-After` (whole seconds) on a 503 the pool's limits cause.
    pub retry_after: Duration,
    /// Below this share (percent) of healthy servers, balance over all of them (panic mode).
    pub panic_threshold: u32,
    /// Active health checks; `None` when the pool has no `[pools.health]` table.
    pub health: Option<HealthCheck>,
}

/// Active health checks of every server of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passes that turn a down server up.
    pub healthy_after: u32,
    /// Consecutive failures that turn a server down.
    pub unhealthy_after: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// A TCP connect is a pass.
    Tcp,
    /// `GET path` answered with a status in `expect` is a pass.
    Http {
        path: String,
        /// Inclusive status range.
        expect: (u16, u16),
        /// `Host` sent; `None`: the pool's `host_header`, else the server address as written.
        host: Option<HeaderValue>,
    },
}

/// Passive health: a server failing `consecutive_failures` times in a row is ejected for a
/// while (longer on each ejection), within a cap on the share of the pool ejected at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outlier {
    /// 0 disables ejection.
    pub consecutive_failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    pub max_ejection_percent: u32,
}

/// How many requests a pool takes at once before the edge answers 503 itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overload {
    /// Requests in flight to the pool, from sending until the response body ends.
    pub max_concurrent: usize,
    /// Requests that may wait for a free slot (within the route's timeouts).
    pub max_queued: usize,
    /// Sent as `Retry-After` (whole seconds) on the 503.
    pub retry_after: Duration,
}

/// When and how often a failed exchange is tried again on another server of the pool.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Extra tries after the first; 0 disables retries.
    pub attempts: u32,
    pub on: RetryOn,
    /// Also retry methods that are not idempotent (connect failures always are: nothing was sent).
    pub non_idempotent: bool,
    /// Retries may add at most this share (in percent) of the pool's requests over the window.
    pub budget_percent: u32,
    /// Retries always allowed per second, whatever the share.
    pub min_per_second: u32,
    pub budget_window: Duration,
    /// Base delay before a retry; jittered and doubled for each further retry.
    pub backoff: Duration,
    /// Request bodies with a `Content-Length` up to this many bytes are kept so the request
    /// can be re-sent; 0 keeps none.
    pub buffer_body: u64,
}

/// The failures a retry is allowed for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetryOn {
    /// No connection could be made (refused, unreachable, TLS failed): the request was not sent.
    pub connect: bool,
    /// The origin closed or reset the connection before a complete response head.
    pub reset: bool,
    /// No response head within the read timeout.
    pub timeout: bool,
    /// Response statuses (500-599) that are retried.
    pub statuses: Vec<u16>,
}

/// How a pool picks a server for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round robin.
    RoundRobin,
    /// Power of two random choices: fewer requests in flight (per unit of weight) wins.
    LeastRequest,
    /// Rendezvous hashing on a request key: the same key goes to the same server.
    Hash(HashKey),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    /// The path without the query.
    Path,
    Host,
    Header(HeaderName),
}

/// An origin server address as written: an IP socket address, or a name resolved when the
/// runtime is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddr {
    Ip(SocketAddr),
    Name { host: String, port: u16 },
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerAddr::Ip(a) => write!(f, "{a}"),
            ServerAddr::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamTls {
    /// Server name sent in SNI and verified; defaults to the host of each server address.
    pub sni: Option<String>,
    /// PEM file of CA certificates to trust instead of the system store.
    pub ca_file: Option<PathBuf>,
    pub verify: bool,
    /// The certificate chain and key presented to origins (authenticated origin pulls).
    pub client_cert: Option<ClientCertFiles>,
}

/// `client_cert` and `client_key` of a pool's `tls` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub hosts: Vec<HostMatch>,
    pub path_prefix: String,
    /// The failover chain: indices into `Config::pools`, in order of preference (at least one).
    pub pools: Vec<usize>,
    /// Served when every pool of the chain is down.
    pub fallback: Option<Fallback>,
    pub timeouts: Timeouts,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    /// A failing challenge lets requests of this route through (fail open).
    pub critical: bool,
    /// Add `Alt-Svc: h3=":PORT"` to this route's TLS responses when HTTP/3 listeners exist.
    pub alt_svc: bool,
    /// Read request bodies whole (up to `edge.request_buffer`) before contacting the origin.
    /// Off for routes that stream uploads to the origin as they arrive; gRPC requests
    /// (`content-type: application/grpc…`) always stream.
    pub request_buffering: bool,
    /// The shared cache, when `cache.enabled`.
    pub cache: Option<CacheConfig>,
}

/// A route's shared HTTP cache (`routes[].cache`).
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Bytes the memory tier may hold (bodies and headers).
    pub memory: u64,
    /// Larger responses are streamed to the client and not stored.
    pub max_object_size: u64,
    /// Heuristic freshness (RFC 9111 §4.2.2) for responses without an explicit lifetime.
    pub heuristic: bool,
    /// How long past its freshness a stored response may be served when the origin fails,
    /// even if the origin sent no `stale-if-error` (zero: only what the origin allows).
    pub serve_stale_on_error: Duration,
    /// How long a request waits for another request's fetch of the same key.
    pub lock_timeout: Duration,
    /// A targeted cache-control field (RFC 9213) that takes precedence over
    /// `CDN-Cache-Control` and `Cache-Control`.
    pub targeted_field: Option<HeaderName>,
    pub key: CacheKey,
    /// The disk tier, when configured.
    pub disk: Option<CacheDisk>,
}

/// A route cache's disk tier.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheDisk {
    /// Folder of the tier (absolute: joined to the config's folder when written relative).
    pub path: PathBuf,
    /// Bytes the files may take; the oldest written go first.
    pub size: u64,
}

/// What the cache key is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheKey {
    pub host: bool,
    pub query: QueryKey,
    /// Query parameters left out of the key (e.g. `utm_source`).
    pub ignore_query: Vec<String>,
    /// Request headers whose values are part of the key (lower-case names).
    pub headers: Vec<HeaderName>,
}

/// How the query string enters the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKey {
    /// Parameters sorted by name, so `?b=1&a=2` and `?a=2&b=1` are one object.
    Sorted,
    /// As sent.
    AsSent,
    /// Not at all.
    Ignore,
}

/// A fixed response a route serves when its whole failover chain is down.
#[derive(Debug, Clone, PartialEq)]
pub struct Fallback {
    pub status: http::StatusCode,
    /// Read when the runtime is built (at most `MAX_FALLBACK_BYTES`).
    pub file: PathBuf,
    pub content_type: HeaderValue,
    pub retry_after: Option<Duration>,
}

/// Largest fallback file.
pub const MAX_FALLBACK_BYTES: u64 = 1 << 20;

/// How a route matches the request's host (lower-case, without port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: matches any name with at least one more label.
    Suffix(String),
}

impl HostMatch {
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => h.eq_ignore_ascii_case(host),
            HostMatch::Suffix(s) => {
                host.len() > s.len()
                    && host
                        .get(host.len() - s.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(s))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    /// Longest wait for the next read from the origin: the response head, then each body chunk.
    pub read: Duration,
    /// Whole exchange with the origin, body included; `None` means no overall limit.
    pub total: Option<Duration>,
}

/// Header changes applied in order: remove, then set (replace), then add (append).
#[derive(Debug, Clone, Default)]
pub struct HeaderOps {
    pub remove: Vec<HeaderName>,
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::HostMatch;

    #[test]
    fn wildcard_needs_a_label() {
        let m = HostMatch::Suffix(".example.com".into());
        assert!(m.matches("a.example.com"));
        assert!(m.matches("A.Example.COM"));
        assert!(!m.matches("example.com"));
        assert!(!m.matches(".example.com"));
        assert!(!m.matches("badexample.com"));
    }
}
