//! The errors of starting the DNS server.

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("dns.listen: cannot listen on {addr} ({proto}): {source} (choose a free address, or stop what uses it)")]
    Bind {
        addr: std::net::SocketAddr,
        proto: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("dns: cannot start the DNS thread: {0}")]
    Thread(#[source] std::io::Error),
}
