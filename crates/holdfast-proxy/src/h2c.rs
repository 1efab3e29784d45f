//! Telling cleartext HTTP/2 with prior knowledge (h2c) from HTTP/1.1 on a plain connection:
//! read the first bytes, compare them with the HTTP/2 connection preface, and replay them to
//! whichever of the edge's own servers takes the connection, so h2c listeners apply exactly
//! the limits every other connection gets. Nothing here parses beyond the preface.

use crate::rewind::Rewind;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Read until the bytes seen are the whole preface (HTTP/2) or cannot begin it (HTTP/1.1),
/// or the client closes. Callers bound this with the client header timeout.
pub(crate) async fn sniff<S: AsyncRead + Unpin>(mut stream: S) -> io::Result<(bool, Rewind<S>)> {
    let mut buf = [0u8; PREFACE.len()];
    let mut filled = 0;
    let h2 = loop {
        let n = stream
            .read(buf.get_mut(filled..).unwrap_or_default())
            .await?;
        filled += n;
        if n == 0 || !PREFACE.starts_with(buf.get(..filled).unwrap_or_default()) {
            break false;
        }
        if filled == PREFACE.len() {
            break true;
        }
    };
    let prefix = buf.get(..filled).unwrap_or_default().to_vec();
    Ok((h2, Rewind::new(prefix, stream)))
}
