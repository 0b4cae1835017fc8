//! Hot reload: re-read `gateway.toml` and `schemas/`, check them as
//! `txgate check` does, and swap the new snapshot in atomically.
//!
//! A config that does not check is refused with a clear log line and an
//! error for whoever asked (`POST /reload`, `txgate reload`); the running
//! config stays. Connections are kept, and a request in flight finishes on
//! the snapshot it started with (the gateway loads it once per request).
//! `Snapshot::build` keeps the pools of backends whose settings did not
//! change; pools of changed or removed backends are drained after the swap.
//! Settings the process reads only at start (listeners, caller limits,
//! `[admin]`, `[journal]`) are applied on the next restart, and the reload
//! says so.

use crate::config::{ConfigError, Overrides, RawConfig};
use crate::gateway::Gateway;
use crate::snapshot::{Backend, CheckFailed, Snapshot};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Something that keeps state derived from the snapshot (metric labels,
/// the journal's schemas) and must hear of a new one.
pub trait Reloadable: Send + Sync + std::fmt::Debug {
    fn reloaded(&self, snap: &Snapshot);
}

/// Where the config came from and what was done to it at start, so a
/// reload reads it exactly the same way: the same file, the same CLI
/// overrides, the same simulator addresses.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    pub path: PathBuf,
    pub overrides: Overrides,
    /// `--admin ADDR` of `serve`.
    pub admin_address: Option<String>,
    /// `--no-admin`.
    pub no_admin: bool,
    /// `--journal FILE` of `serve`.
    pub journal_path: Option<PathBuf>,
    /// `--no-journal`.
    pub no_journal: bool,
    /// Backends answered by a simulator of this process: id → its bound address.
    pub pinned: BTreeMap<String, String>,
}

impl ConfigSource {
    /// Reads and overrides the file (checks come after, in `Snapshot::build`).
    pub fn load(&self) -> Result<RawConfig, ReloadError> {
        let mut raw = RawConfig::load(&self.path)?;
        raw.apply(&self.overrides).map_err(ReloadError::Override)?;
        if let Some(a) = &self.admin_address {
            raw.admin.address = a.clone();
        }
        if self.no_admin {
            raw.admin.enabled = false;
        }
        if let Some(p) = &self.journal_path {
            raw.journal.path = p.clone();
        }
        if self.no_journal {
            raw.journal.enabled = false;
        }
        for b in &mut raw.backends {
            if let Some(a) = self.pinned.get(&b.id) {
                b.address = a.clone();
            }
        }
        Ok(raw)
    }
}

/// Why a reload was refused. The running config is untouched in every case.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("this gateway was started from a config in memory: there is no file to re-read")]
    NoSource,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Override(String),
    #[error(transparent)]
    Check(#[from] CheckFailed),
    #[error("reload task failed: {0}")]
    Task(String),
}

/// What a successful reload did, for the log and the `POST /reload` answer.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadOutcome {
    /// The generation now served (1 is the config read at start).
    pub generation: u64,
    pub routes: usize,
    /// Backends whose pool was kept as it was.
    pub kept: Vec<String>,
    /// Backends whose settings changed: new pool, old one drained.
    pub replaced: Vec<String>,
    pub added: Vec<String>,
    /// Backends no longer in the config: pool drained.
    pub removed: Vec<String>,
    /// Changes that take effect only after a restart.
    pub restart_needed: Vec<String>,
}

/// Reload counters, exposed on `/metrics`.
#[derive(Debug)]
pub struct ReloadStats {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    /// The generation served: 1 at start, +1 per successful reload.
    pub generation: AtomicU64,
    /// Unix milliseconds of the last success / failure (0: never).
    pub last_ok_ms: AtomicU64,
    pub last_failed_ms: AtomicU64,
}

impl Default for ReloadStats {
    fn default() -> Self {
        ReloadStats {
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            generation: AtomicU64::new(1),
            last_ok_ms: AtomicU64::new(0),
            last_failed_ms: AtomicU64::new(0),
        }
    }
}

/// Performs reloads, one at a time, for SIGHUP and `POST /reload` alike.
#[derive(Debug)]
pub struct Reloader {
    gateway: Arc<Gateway>,
    source: Option<ConfigSource>,
    hooks: Vec<Arc<dyn Reloadable>>,
    /// One reload at a time (never taken on the message path).
    one: tokio::sync::Mutex<()>,
    pub stats: ReloadStats,
}

impl Reloader {
    /// `source` is `None` for a gateway started from a config in memory:
    /// its reloads are refused with [`ReloadError::NoSource`].
    pub fn new(
        gateway: Arc<Gateway>,
        source: Option<ConfigSource>,
        hooks: Vec<Arc<dyn Reloadable>>,
    ) -> Reloader {
        Reloader {
            gateway,
            source,
            hooks,
            one: tokio::sync::Mutex::new(()),
            stats: ReloadStats::default(),
        }
    }

    pub fn source(&self) -> Option<&ConfigSource> {
        self.source.as_ref()
    }

    /// Re-reads and checks the config, then swaps it in; on any problem the
    /// running config stays and the error says why.
    pub async fn reload(&self) -> Result<ReloadOutcome, ReloadError> {
        let _one = self.one.lock().await;
        let path = self
            .source
            .as_ref()
            .map(|s| s.path.display().to_string())
            .unwrap_or_default();
        match self.try_reload().await {
            Ok(outcome) => {
                self.stats.ok.fetch_add(1, Ordering::Relaxed);
                self.stats.last_ok_ms.store(now_ms(), Ordering::Relaxed);
                tracing::info!(
                    config = %path,
                    generation = outcome.generation,
                    routes = outcome.routes,
                    kept = ?outcome.kept,
                    replaced = ?outcome.replaced,
                    added = ?outcome.added,
                    removed = ?outcome.removed,
                    "config reloaded"
                );
                for r in &outcome.restart_needed {
                    tracing::warn!(config = %path, "reload: {r}");
                }
                Ok(outcome)
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                self.stats.last_failed_ms.store(now_ms(), Ordering::Relaxed);
                tracing::error!(
                    config = %path,
                    generation = self.stats.generation.load(Ordering::Relaxed),
                    "reload refused, the running config stays: {e}"
                );
                Err(e)
            }
        }
    }

    async fn try_reload(&self) -> Result<ReloadOutcome, ReloadError> {
        let source = self.source.clone().ok_or(ReloadError::NoSource)?;
        let current = self.gateway.snapshot();
        let previous = current.clone();
        // Reading ~40 files is blocking I/O: keep it off the runtime's workers.
        let next = tokio::task::spawn_blocking(move || -> Result<Snapshot, ReloadError> {
            let raw = source.load()?;
            Ok(Snapshot::build(raw, Some(&previous))?)
        })
        .await
        .map_err(|e| ReloadError::Task(e.to_string()))??;

        let restart_needed = restart_needed(&current, &next);
        let mut outcome = ReloadOutcome {
            generation: 0,
            routes: next.routes.len(),
            kept: Vec::new(),
            replaced: Vec::new(),
            added: Vec::new(),
            removed: Vec::new(),
            restart_needed,
        };
        let mut retired: Vec<Arc<Backend>> = Vec::new();
        for (id, old) in &current.backends {
            match next.backends.get(id) {
                Some(new) if Arc::ptr_eq(old, new) => outcome.kept.push(id.clone()),
                Some(_) => {
                    outcome.replaced.push(id.clone());
                    retired.push(old.clone());
                }
                None => {
                    outcome.removed.push(id.clone());
                    retired.push(old.clone());
                }
            }
        }
        outcome.added = next
            .backends
            .keys()
            .filter(|id| !current.backends.contains_key(*id))
            .cloned()
            .collect();

        self.gateway.install(next);
        outcome.generation = self.stats.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let installed = self.gateway.snapshot();
        for h in &self.hooks {
            h.reloaded(&installed);
        }
        drop(current);
        for b in retired {
            retire(b);
        }
        Ok(outcome)
    }
}

/// Drains a pool the new snapshot no longer uses: idle connections now,
/// and again as requests still in flight on it hand their connections back.
fn retire(backend: Arc<Backend>) {
    backend.pool.drain();
    if backend.pool.in_use() == 0 {
        return;
    }
    let linger = Duration::from_millis(backend.config.timeouts.request_ms) + Duration::from_secs(5);
    tokio::spawn(async move {
        let until = tokio::time::Instant::now() + linger;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while tokio::time::Instant::now() < until {
            tick.tick().await;
            backend.pool.drain();
            if backend.pool.in_use() == 0 {
                break;
            }
        }
        tracing::debug!(backend = %backend.id(), "retired pool drained");
    });
}

/// What differs between two configs but is read only at start.
fn restart_needed(old: &Snapshot, new: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    if format!("{:?}", old.raw.listeners) != format!("{:?}", new.raw.listeners) {
        out.push("[[listener]] changed: listeners are bound at start; restart to apply".into());
    }
    // Header, schemas and fixtures paths are re-read; every other setting is read at start.
    let (mut a, b) = (old.raw.gateway.clone(), new.raw.gateway.clone());
    a.header.clone_from(&b.header);
    a.schemas.clone_from(&b.schemas);
    a.fixtures.clone_from(&b.fixtures);
    if format!("{a:?}") != format!("{b:?}") {
        out.push(
            "[gateway] limits or timeouts changed: they are read at start; restart to apply".into(),
        );
    }
    if old.raw.admin != new.raw.admin {
        out.push("[admin] changed: restart to apply".into());
    }
    if old.raw.journal != new.raw.journal {
        out.push("[journal] changed: restart to apply".into());
    }
    out
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
