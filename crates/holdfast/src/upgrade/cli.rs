//! `holdfast upgrade`: ask the running process, through its admin plane (`POST /upgrade`),
//! to start the new binary on its listening sockets, and say how it went. The admin address
//! and token come from the configuration file (or `--admin`); the answer comes once the new
//! process is ready or has failed, so the exit status is the upgrade's.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct UpgradeArgs {
    /// The running edge's configuration file: where its admin plane listens, its token.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// The new binary (default: the path the running process was started from).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// The admin address, instead of the configuration's `admin.listen`.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
}

/// What the admin plane answered: `Ok(body)` for 200, `Err(reason)` otherwise.
pub fn run(args: &UpgradeArgs) -> Result<String, String> {
    let (addr, token) = admin_of(&args.config, args.admin)?;
    let body = match &args.binary {
        Some(b) => {
            let abs =
                std::path::absolute(b).map_err(|e| format!("--binary {}: {e}", b.display()))?;
            serde_json::json!({ "binary": abs }).to_string()
        }
        None => String::new(),
    };
    let mut request = format!(
        "POST /upgrade HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    let timeout = super::READY_TIMEOUT + Duration::from_secs(15);
    let fail = |e: std::io::Error| {
        format!("admin plane at {addr}: {e} (is holdfast running with this configuration?)")
    };
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(fail)?;
    stream.set_read_timeout(Some(timeout)).map_err(fail)?;
    stream.write_all(request.as_bytes()).map_err(fail)?;
    let mut response = Vec::new();
    stream
        .take(1 << 20)
        .read_to_end(&mut response)
        .map_err(fail)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok());
    let body = body.trim().to_string();
    match status {
        Some(200) => Ok(body),
        Some(code) => Err(format!("upgrade refused ({code}): {body}")),
        None => Err(format!("admin plane at {addr}: not an HTTP answer")),
    }
}

/// The admin address and bearer token the configuration file names.
fn admin_of(
    config: &Path,
    admin: Option<SocketAddr>,
) -> Result<(SocketAddr, Option<String>), String> {
    let read = holdfast_artifact::read_bounded_text(config, holdfast_config::MAX_CONFIG_BYTES)
        .map_err(|e| format!("{}: {e}", config.display()))?;
    let base = config.parent().unwrap_or(Path::new("."));
    let parsed = holdfast_config::parse(&read.content, base);
    // With --admin, a file that no longer validates (the change being rolled out) still
    // lets the running process say why its successor refused it; no token then.
    if let (Some(addr), Err(_)) = (admin, &parsed) {
        return Ok((addr, None));
    }
    let parsed = parsed.map_err(|errors| {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!(
            "{}: invalid, cannot find the admin plane in it:\n{}\n(give --admin ADDR)",
            config.display(),
            list.join("\n")
        )
    })?;
    if parsed.admin_auth.tls.is_some() {
        return Err(format!(
            "{}: admin.tls_cert is set and `holdfast upgrade` speaks plain HTTP: send SIGUSR2 \
             to the process, or POST /upgrade with your TLS client",
            config.display()
        ));
    }
    let token = match &parsed.admin_auth.token_file {
        Some(file) => Some(
            holdfast_artifact::read_bounded_text(file, 4096)
                .map_err(|e| format!("admin.token_file: {}: {e}", file.display()))?
                .content
                .trim()
                .to_string(),
        ),
        None => None,
    };
    Ok((admin.unwrap_or(parsed.admin.listen), token))
}
