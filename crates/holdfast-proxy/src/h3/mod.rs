//! HTTP/3 to clients (`edge.h3_listen`): QUIC with `quinn`, HTTP/3 framing and QPACK with `h3`
//! (hyper has no HTTP/3). Each HTTP/3 request is handed to `service::handle` — the same
//! phases as HTTP/1.1 and HTTP/2, with its body adapted (`body.rs`) to the `ClientBody` the
//! phases read — and the response streams back over its QUIC stream. `listener.rs` binds the
//! UDP sockets and runs the endpoints on their own thread, `connection.rs` one QUIC
//! connection, `request.rs` one request stream; `alt_svc.rs` advertises HTTP/3 on TLS
//! responses; `metrics.rs` holds the `holdfast_quic_*` families. Certificates come from the
//! TLS listeners' resolver in the current `State` (so a reload rotates them), with ALPN `h3`. `memory.rs` is an in-memory UDP network on which `fuzzing` runs the listener's
//! own accept loop without sockets.

mod admission;
pub(crate) mod alt_svc;
mod body;
mod connection;
mod listener;
pub(crate) mod memory;
pub(crate) mod metrics;
mod request;

pub use listener::QuicConfigError;
pub(crate) use listener::{accept_loop, bind, quic_server_config, start, H3Sockets};
