//! HTTP/3 frames on a request stream, through the edge's own HTTP/3 listener: its accept
//! loop, connection and request handling (`h3` framing and QPACK, then `service::handle`,
//! the phases every protocol goes through) on an in-memory network with a QUIC client
//! (`holdfast_proxy::fuzzing::H3Exchange`; no sockets to the client). The input is a length
//! byte N, then N bytes written on a client unidirectional stream (the control stream when
//! they start with 0x00; nothing when N is 0), then the bytes of one request stream; both
//! streams are ended. Never a panic, and never silence: within 5 s the client has the
//! response stream's end or the stream's or connection's error; a response that has bytes
//! starts with a HEADERS frame. The origin is a closed loopback port (502).
#![no_main]

use holdfast_proxy::fuzzing::{state_from_toml, H3Exchange};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const CONFIG: &str = r#"
[edge]
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
h3_listen = ["127.0.0.1:0"]
access_log = "off"
client_header_timeout = "1s"
max_request_body = "64KiB"
h3 = { max_streams = 8 }

[[edge.tls]]
cert = "site.pem"
key = "site.key"

[[pools]]
name = "app"
servers = ["127.0.0.1:9"]

[[routes]]
name = "all"
match = {}
pool = "app"
"#;

fn edge() -> &'static H3Exchange {
    static EDGE: OnceLock<H3Exchange> = OnceLock::new();
    EDGE.get_or_init(|| {
        let cert = rcgen::generate_simple_self_signed(vec!["example.com".to_string()]).unwrap();
        let dir = std::env::temp_dir().join(format!("holdfast-fuzz-h3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("site.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.join("site.key"), cert.signing_key.serialize_pem()).unwrap();
        let state = state_from_toml(CONFIG, &dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        H3Exchange::start(state).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let [n, rest @ ..] = data else { return };
    let (control, request) = rest.split_at(usize::from(*n).min(rest.len()));
    let seen = edge()
        .exchange(control, request)
        .unwrap_or_else(|e| panic!("the edge neither answered nor closed: {e}"));
    if let Ok(response) = seen {
        if let Some(first) = response.first() {
            assert_eq!(*first, 0x01, "a response starts with HEADERS: {response:?}");
        }
    }
});
