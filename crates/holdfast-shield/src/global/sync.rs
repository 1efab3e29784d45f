//! [`GlobalSync`]: the thread that sends pending counts to Redis and brings totals back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus::{IntCounter, IntCounterVec};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

use super::table::{GlobalLimit, Taken};
use holdfast_common::lock;

/// `KEYS[1]`: the window key; `ARGV[1]`: the count to add; `ARGV[2]`: its lifetime (ms).
/// Returns the window's total.
pub const SCRIPT: &str = "local n = redis.call('INCRBY', KEYS[1], ARGV[1])\n\
                          redis.call('PEXPIRE', KEYS[1], ARGV[2])\n\
                          return n\n";

/// `[redis]` as the sync task uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    pub url: String,
    pub timeout: Duration,
    pub sync_interval: Duration,
}

/// `holdfast_ratelimit_redis_calls_total` and `holdfast_ratelimit_redis_errors_total{kind}`.
#[derive(Clone)]
pub struct RedisMetrics {
    pub calls: IntCounter,
    pub errors: IntCounterVec,
}

struct State {
    down: bool,
    since: SystemTime,
    last_error: Option<String>,
}

/// Whether Redis answers, shared by the sync task (writes) and the limits (read one atomic
/// per request).
pub struct RedisHealth {
    down: AtomicBool,
    calls: AtomicU64,
    state: Mutex<State>,
}

/// [`RedisHealth`] for `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSnapshot {
    pub down: bool,
    pub since: SystemTime,
    pub last_error: Option<String>,
    pub calls: u64,
}

impl Default for RedisHealth {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisHealth {
    /// `ok` until a call fails.
    pub fn new() -> Self {
        RedisHealth {
            down: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            state: Mutex::new(State {
                down: false,
                since: SystemTime::now(),
                last_error: None,
            }),
        }
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> RedisSnapshot {
        let s = lock(&self.state);
        RedisSnapshot {
            down: s.down,
            since: s.since,
            last_error: s.last_error.clone(),
            calls: self.calls.load(Ordering::Relaxed),
        }
    }

    fn ok(&self) {
        let mut s = lock(&self.state);
        if s.down {
            s.down = false;
            s.since = SystemTime::now();
            self.down.store(false, Ordering::Relaxed);
            tracing::warn!("redis is back: global rate limits count across instances again");
        }
    }

    fn failed(&self, error: &str) {
        let mut s = lock(&self.state);
        s.last_error = Some(error.to_string());
        if !s.down {
            s.down = true;
            s.since = SystemTime::now();
            self.down.store(true, Ordering::Relaxed);
            tracing::error!(
                error,
                "redis is unavailable: global rate limits fall back to local limits on each \
                 instance until it answers again"
            );
        }
    }
}

/// The sync thread of a set of global limits; stops when dropped.
pub struct GlobalSync {
    stop: Option<tokio::sync::watch::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GlobalSync {
    /// Start syncing `limits` (which share `health`) with Redis every `sync_interval`, on
    /// a thread of its own with a current-thread runtime.
    pub fn start(
        settings: RedisSettings,
        limits: Vec<Arc<GlobalLimit>>,
        health: Arc<RedisHealth>,
        metrics: RedisMetrics,
    ) -> std::io::Result<GlobalSync> {
        let (stop, stopped) = tokio::sync::watch::channel(());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("holdfast-redis-sync".into())
            .spawn(move || {
                let task = Task {
                    settings,
                    limits,
                    health,
                    metrics,
                    conn: None,
                    sha: None,
                };
                runtime.block_on(task.run(stopped));
            })?;
        Ok(GlobalSync {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for GlobalSync {
    fn drop(&mut self) {
        // Closing the channel wakes the task at once, even mid-call.
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Why a round trip failed, as the metric's `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Timeout,
    Connect,
    Error,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Timeout => "timeout",
            Kind::Connect => "connect",
            Kind::Error => "error",
        }
    }

    fn of(e: &redis::RedisError) -> Kind {
        if e.is_timeout() {
            Kind::Timeout
        } else if e.is_connection_refusal() {
            Kind::Connect
        } else {
            Kind::Error
        }
    }
}

type Failure = (Kind, String);

struct Task {
    settings: RedisSettings,
    limits: Vec<Arc<GlobalLimit>>,
    health: Arc<RedisHealth>,
    metrics: RedisMetrics,
    conn: Option<MultiplexedConnection>,
    sha: Option<String>,
}

impl Task {
    async fn run(mut self, mut stopped: tokio::sync::watch::Receiver<()>) {
        let client = match redis::Client::open(self.settings.url.as_str()) {
            Ok(c) => Some(c),
            Err(e) => {
                self.fail(Kind::Error, &format!("invalid redis url: {e}"));
                None
            }
        };
        let mut tick = tokio::time::interval(self.settings.sync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                _ = tick.tick() => {}
            }
            let Some(client) = &client else { continue };
            let batch: Vec<(usize, Taken)> = self
                .limits
                .iter()
                .enumerate()
                .flat_map(|(i, l)| l.take_pending().into_iter().map(move |t| (i, t)))
                .collect();
            if batch.is_empty() && !self.health.is_down() {
                continue; // nothing to send: no call
            }
            let result = tokio::select! {
                _ = stopped.changed() => return,
                r = self.round(client, &batch) => r,
            };
            match result {
                Ok(totals) => {
                    for ((i, t), total) in batch.iter().zip(totals) {
                        if let Some(l) = self.limits.get(*i) {
                            l.synced(t, u64::try_from(total).unwrap_or(0));
                        }
                    }
                    self.health.ok();
                }
                Err((kind, msg)) => {
                    for (i, t) in &batch {
                        if let Some(l) = self.limits.get(*i) {
                            l.unsent(t);
                        }
                    }
                    // A failed or timed-out connection may hold a late reply: start afresh.
                    self.conn = None;
                    self.fail(kind, &msg);
                }
            }
        }
    }

    fn fail(&self, kind: Kind, msg: &str) {
        self.metrics
            .errors
            .with_label_values(&[kind.as_str()])
            .inc();
        self.health.failed(&format!("{}: {msg}", kind.as_str()));
    }

    fn count_calls(&self, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.metrics.calls.inc_by(n);
        self.health.calls.fetch_add(n, Ordering::Relaxed);
    }

    /// `f` within the per-call timeout.
    async fn timed<T>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.settings.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err((Kind::of(&e), e.to_string())),
            Err(_) => Err((
                Kind::Timeout,
                format!("no answer within {:?}", self.settings.timeout),
            )),
        }
    }

    /// One round: connect (and `SCRIPT LOAD`) if needed, then one pipeline of `EVALSHA`s
    /// (`EVAL`s after `NOSCRIPT`), or a `PING` when there is nothing to send. The totals, in
    /// the batch's order.
    async fn round(
        &mut self,
        client: &redis::Client,
        batch: &[(usize, Taken)],
    ) -> Result<Vec<i64>, Failure> {
        let mut conn = match self.conn.clone() {
            Some(c) => c,
            None => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.settings.timeout))
                    .set_response_timeout(Some(self.settings.timeout));
                let c = self
                    .timed(client.get_multiplexed_async_connection_with_config(&config))
                    .await
                    .map_err(|(k, m)| (if k == Kind::Error { Kind::Connect } else { k }, m))?;
                self.count_calls(1);
                let mut load = c.clone();
                let sha: String = self
                    .timed(
                        redis::cmd("SCRIPT")
                            .arg("LOAD")
                            .arg(SCRIPT)
                            .query_async(&mut load),
                    )
                    .await?;
                self.sha = Some(sha);
                self.conn = Some(c.clone());
                c
            }
        };
        if batch.is_empty() {
            self.count_calls(1);
            let _: String = self
                .timed(redis::cmd("PING").query_async(&mut conn))
                .await?;
            return Ok(Vec::new());
        }
        let sha = self.sha.clone();
        if let Some(sha) = &sha {
            let pipe = self.pipeline(batch, Some(sha));
            self.count_calls(batch.len());
            match tokio::time::timeout(self.settings.timeout, pipe.query_async(&mut conn)).await {
                Ok(Ok(totals)) => return Ok(totals),
                Ok(Err(e))
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    tracing::info!("redis lost the rate-limit script (NOSCRIPT): using EVAL");
                }
                Ok(Err(e)) => return Err((Kind::of(&e), e.to_string())),
                Err(_) => {
                    return Err((
                        Kind::Timeout,
                        format!("no answer within {:?}", self.settings.timeout),
                    ))
                }
            }
        }
        // EVAL also caches the script in Redis: the next round's EVALSHA finds it.
        let pipe = self.pipeline(batch, None);
        self.count_calls(batch.len());
        self.timed(pipe.query_async(&mut conn)).await
    }

    fn pipeline(&self, batch: &[(usize, Taken)], sha: Option<&str>) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        for (i, t) in batch {
            let Some(l) = self.limits.get(*i) else {
                continue;
            };
            match sha {
                Some(sha) => pipe.cmd("EVALSHA").arg(sha),
                None => pipe.cmd("EVAL").arg(SCRIPT),
            };
            pipe.arg(1)
                .arg(l.redis_key(t.key, t.window))
                .arg(t.count)
                .arg(l.per_ms().saturating_mul(2));
        }
        pipe
    }
}
