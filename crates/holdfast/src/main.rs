//! The `holdfast` command: `run`, `check`, `upgrade`, `rollout`, `demo`. Parses arguments, sets up
//! logging, starts the edge (on inherited sockets when it replaces a running process or systemd
//! passed them) and turns signals into reloads, binary upgrades and shutdown. Everything else
//! is in the library.

#![forbid(unsafe_code)]

use anyhow::Context;
use clap::{Parser, Subcommand};
use holdfast::{ConfigSource, ReloadOutcome, Running};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[cfg(not(any(feature = "jemalloc", feature = "system-alloc")))]
#[global_allocator]
static GLOBAL: holdfast_alloc::Mimalloc = holdfast_alloc::Mimalloc;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "holdfast",
    version,
    about = "A self-hosted edge that keeps serving."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the edge on a configuration file.
    Run {
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate files offline with the same checks as a running edge; prints every error,
    /// exits 1 if any file is invalid.
    Check {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// What the files are: `config` (the main configuration) or an artifact kind:
        /// `bot-features`, `ip-list` or `rule-list`.
        #[arg(long, default_value = "config", value_name = "KIND",
              value_parser = ["config", "bot-features", "ip-list", "rule-list"])]
        kind: String,
        /// For an artifact kind (not `config`: a config names its key in the file): the
        /// generator's ed25519 public key (base64); the file then needs a valid detached
        /// `FILE.sig`.
        #[arg(long, value_name = "BASE64")]
        public_key: Option<String>,
    },
    /// Replace the running edge by a new binary without dropping a connection: the running
    /// process (found through its admin plane) starts the new one on its listening sockets
    /// and drains once it is ready. Exits 1 with the reason if the new one failed (the old
    /// one keeps serving). `SIGUSR2` to the process does the same.
    Upgrade(holdfast::upgrade::cli::UpgradeArgs),
    /// Roll a configuration out to a fleet in stages through etcd, gated on the fleet's health.
    Rollout(holdfast::RolloutArgs),
    /// Run a self-contained tour: two in-process origins behind the edge, with failover, a
    /// fallback page, cache, rate limit, rule, challenge, the 18 Nov 2025 replay and DNS
    /// steering; prints what to try. Port 0 picks a free port (printed).
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
        /// The demo's DNS server (UDP and TCP).
        #[arg(long, default_value = "127.0.0.1:8053")]
        dns: SocketAddr,
    },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOLDFAST_LOG")
        // hickory's server logs every DNS query at info: a line per packet is a flood (and
        // most of the DNS server's CPU), so its crates log errors only unless asked (some of its warnings are per packet too).
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                "info,hickory_server=error,hickory_proto=error,hickory_net=error",
            )
        });
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Idle workers give mimalloc's free pages back (see `holdfast_alloc::release_free_pages`).
    #[cfg(not(any(feature = "jemalloc", feature = "system-alloc")))]
    holdfast::set_allocator_trim(holdfast_alloc::release_free_pages);
    // A panic anywhere (a module's, caught at its boundary) is reported at a bounded rate.
    holdfast_modules::install_rate_limited_panic_hook();
    match cli.command {
        Command::Check {
            files,
            kind,
            public_key,
        } => check(&files, &kind, public_key.as_deref()),
        Command::Run { config } => {
            init_logging();
            exit(serve(ConfigSource::File(config)))
        }
        Command::Upgrade(args) => match holdfast::upgrade::cli::run(&args) {
            Ok(body) => {
                println!("{body}");
                ExitCode::SUCCESS
            }
            Err(reason) => {
                eprintln!("holdfast upgrade: {reason}");
                ExitCode::FAILURE
            }
        },
        Command::Rollout(args) => holdfast::rollout(args),
        Command::Demo { listen, admin, dns } => {
            init_logging();
            exit(demo(holdfast::demo::DemoAddrs { listen, admin, dns }))
        }
    }
}

fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("holdfast: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(files: &[PathBuf], kind: &str, public_key: Option<&str>) -> ExitCode {
    if kind == "config" && public_key.is_some() {
        println!(
            "--public-key: not used with --kind config (a config names its key in \
             [modules.bot] public_key); give --kind bot-features, ip-list or rule-list"
        );
        return ExitCode::FAILURE;
    }
    let mut ok = true;
    for file in files {
        let checked = match kind {
            "config" => holdfast::check_file(file).map(|()| String::new()),
            _ => holdfast::check_artifact(kind, file, public_key),
        };
        match checked {
            Ok(summary) if summary.is_empty() => {
                println!("{}: ok", file.display());
                for notice in holdfast::config_notices(file) {
                    println!("{notice}");
                }
            }
            Ok(summary) => println!("{}: ok ({summary})", file.display()),
            Err(errors) => {
                ok = false;
                for e in errors {
                    println!("{e}");
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn demo(addrs: holdfast::demo::DemoAddrs) -> anyhow::Result<()> {
    let signals = Signals::install()?;
    let demo = holdfast::demo::Demo::start(&addrs).context("starting the demo")?;
    eprintln!("{}", demo.instructions());
    // Stopped, or upgraded (the new process runs the tour on these sockets): either way this
    // one's origins and files go.
    let _ = signals.wait(demo.running());
    demo.shutdown();
    Ok(())
}

fn serve(source: ConfigSource) -> anyhow::Result<()> {
    // Handlers go in before the edge starts: SIGHUP's default action is to terminate, so a
    // reload signal sent as soon as the edge says it is serving must already be ours.
    let signals = Signals::install()?;
    // Sockets from the process this one replaces (a binary upgrade) or from systemd.
    let inherited = holdfast::upgrade::inherit()?;
    let running = match Running::start_inherited(source, inherited.sockets) {
        Ok(r) => r,
        Err(e) => {
            if let Some(handover) = inherited.handover {
                handover.failed(&e.to_string());
            }
            return Err(e.into());
        }
    };
    match inherited.handover {
        // The old process stops accepting and drains once it reads this.
        Some(handover) => {
            if let Err(e) = handover.ready() {
                running.shutdown();
                anyhow::bail!("upgrade: cannot tell the old process this one is ready: {e}");
            }
        }
        None => holdfast::upgrade::notify_ready(),
    }
    match signals.wait(&running) {
        Exit::Stop => running.shutdown(),
        Exit::Upgraded => running.drain_after_upgrade(),
    }
    Ok(())
}

enum Exit {
    Stop,
    /// A new process serves on this one's sockets: drain and stop.
    Upgraded,
}

/// SIGHUP reloads; SIGUSR2 upgrades the binary; SIGINT and SIGTERM stop. Installed before
/// the edge starts.
struct Signals {
    rt: tokio::runtime::Runtime,
    hup: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (hup, usr2, term, int) = {
            let _runtime = rt.enter();
            (
                signal(SignalKind::hangup())?,
                signal(SignalKind::user_defined2())?,
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            )
        };
        Ok(Signals {
            rt,
            hup,
            usr2,
            term,
            int,
        })
    }

    /// Reload on SIGHUP, upgrade on SIGUSR2 or `POST /upgrade`, until SIGINT or SIGTERM or
    /// a successful upgrade.
    fn wait(self, running: &Running) -> Exit {
        let Signals {
            rt,
            mut hup,
            mut usr2,
            mut term,
            mut int,
        } = self;
        let mut jobs = running.upgrade_requests();
        rt.block_on(async {
            loop {
                tokio::select! {
                    _ = hup.recv() => match running.reload() {
                        ReloadOutcome::Applied { generation } => tracing::info!(generation, "SIGHUP: reloaded"),
                        ReloadOutcome::Rejected { errors, .. } => tracing::warn!(?errors, "SIGHUP: reload rejected"),
                    },
                    _ = usr2.recv() => if upgrade(running, None, "SIGUSR2").is_ok() {
                        return Exit::Upgraded;
                    },
                    Some(job) = jobs.recv() => {
                        let outcome = upgrade(running, job.binary.clone(), "POST /upgrade");
                        let upgraded = outcome.is_ok();
                        job.reply(outcome);
                        if upgraded {
                            return Exit::Upgraded;
                        }
                    }
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                }
            }
            tracing::info!("stopping");
            Exit::Stop
        })
    }
}

/// Run an upgrade (blocking this loop: signals wait, bounded by the ready timeout), log it.
fn upgrade(running: &Running, binary: Option<PathBuf>, by: &str) -> Result<u32, String> {
    match running.upgrade(binary) {
        Ok(pid) => {
            tracing::info!(new_pid = pid, by, "upgrade: the new process is ready");
            Ok(pid)
        }
        Err(e) => {
            tracing::error!(error = %e, by, "upgrade failed; this process keeps serving");
            Err(e.to_string())
        }
    }
}
