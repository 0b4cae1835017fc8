//! The raw configuration, exactly as `gateway.toml` spells it.
//!
//! Nothing here is checked beyond what serde checks: `Snapshot::build`
//! resolves every reference and reports every problem at once.

use crate::frame::Framing;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub gateway: GatewaySettings,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    #[serde(default, rename = "channel")]
    pub channels: Vec<ChannelConfig>,
    #[serde(default, rename = "backend")]
    pub backends: Vec<BackendConfig>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub admin: crate::admin::AdminConfig,
    #[serde(default)]
    pub journal: crate::journal::JournalConfig,
    /// Where the file was read from: relative paths are taken from its folder.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// Process-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// The header layout.
    pub header: PathBuf,
    /// The folder of `<code>.toml` schemas.
    pub schemas: PathBuf,
    /// The folder of fixtures the simulated backends answer from.
    pub fixtures: PathBuf,
    /// Largest body accepted, in bytes.
    pub max_body: usize,
    /// Caller connections open at once, over all listeners.
    pub max_connections: usize,
    /// Requests in flight on one caller connection.
    pub max_in_flight: usize,
    /// A caller connection with nothing to do for this long is closed.
    pub caller_idle_timeout_ms: u64,
    /// A frame that has begun must be complete within this (slowloris guard).
    pub caller_read_timeout_ms: u64,
    /// Writing an answer to a caller that does not read gives up after this.
    pub caller_write_timeout_ms: u64,
    /// On SIGTERM, requests in flight get this long to finish.
    pub shutdown_grace_ms: u64,
    /// A repeated (channel, SeqNo, TranDate) on a non-idempotent route
    /// within this window is refused with GW0103.
    pub dedup_window_ms: u64,
    /// Entries the duplicate-SeqNo store holds at most (oldest go first).
    pub dedup_capacity: usize,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            header: "schemas/header.toml".into(),
            schemas: "schemas".into(),
            fixtures: "fixtures".into(),
            max_body: crate::frame::DEFAULT_MAX_BODY,
            max_connections: 4096,
            max_in_flight: 32,
            caller_idle_timeout_ms: 300_000,
            caller_read_timeout_ms: 30_000,
            caller_write_timeout_ms: 10_000,
            shutdown_grace_ms: 10_000,
            dedup_window_ms: 86_400_000,
            dedup_capacity: 1_000_000,
        }
    }
}

/// fixed | xml | auto (first non-space byte `<` means XML).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    #[default]
    Fixed,
    Xml,
    Auto,
}

/// One address the gateway listens on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub name: String,
    pub address: String,
    #[serde(default)]
    pub framing: Framing,
    #[serde(default = "auto")]
    pub body: BodyFormat,
    /// TCP_DEFER_ACCEPT (Linux): a caller is handed over once its first
    /// bytes arrive, or after about this long (the kernel rounds up to its
    /// SYN-ACK retransmits: 1, 3, 7, 15 … s); 0 (the default) is off.
    #[serde(default)]
    pub defer_accept_ms: u64,
}

fn auto() -> BodyFormat {
    BodyFormat::Auto
}

/// A calling system.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub id: String,
    pub name: String,
    /// When set, messages with this ChnlNo must come from these networks (CIDR).
    #[serde(default)]
    pub sources: Vec<String>,
    /// Requests per second this channel may send (GW0203 beyond); none if unset.
    #[serde(default)]
    pub rate_limit: Option<u32>,
    /// Burst allowed above the rate (default: one second's worth).
    #[serde(default)]
    pub burst: Option<u32>,
}

/// How a backend is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendMode {
    /// A pool of persistent connections, one request in flight on each.
    #[default]
    Long,
    /// A new connection per request.
    Short,
    /// Several requests in flight on each pooled connection, answers
    /// matched by channel plus SeqNo.
    Multiplex,
}

/// Pool settings of one backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    pub max: usize,
    pub min_idle: usize,
    pub idle_timeout_ms: u64,
    /// How long a request waits for a free connection before GW0203.
    pub acquire_timeout_ms: u64,
    /// A pooled connection older than this is closed when next idle.
    pub max_lifetime_ms: u64,
    /// Requests in flight towards this backend, over all its connections
    /// (GW0203 beyond it). For long and short modes it is `max`.
    pub max_in_flight: usize,
    /// Reconnect backoff of the pool warmer: base and cap, with jitter.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max: 32,
            min_idle: 0,
            idle_timeout_ms: 60_000,
            acquire_timeout_ms: 1_000,
            max_lifetime_ms: 3_600_000,
            max_in_flight: 256,
            backoff_base_ms: 100,
            backoff_max_ms: 10_000,
        }
    }
}

/// The circuit breaker of one backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker; 0 disables it.
    pub failures: u32,
    /// How long it stays open before one probe is let through.
    pub cooldown_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            cooldown_ms: 5_000,
        }
    }
}

/// Timeouts towards one backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutConfig {
    pub connect_ms: u64,
    pub request_ms: u64,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        TimeoutConfig {
            connect_ms: 1_000,
            request_ms: 10_000,
        }
    }
}

/// A system that answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub id: String,
    pub name: String,
    pub address: String,
    #[serde(default)]
    pub framing: Framing,
    #[serde(default)]
    pub body: BodyFormat,
    #[serde(default)]
    pub mode: BackendMode,
    #[serde(default)]
    pub pool: PoolConfig,
    #[serde(default)]
    pub timeouts: TimeoutConfig,
    #[serde(default)]
    pub breaker: BreakerConfig,
}

/// query | notification | transaction, as the catalog names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    Query,
    Notification,
    Transaction,
}

/// One transaction code.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub code: String,
    pub name: String,
    pub kind: RouteKind,
    /// Channels that may call this code. Empty denies everyone.
    #[serde(default)]
    pub channels: Vec<String>,
    /// The backend a blank DestSys goes to.
    pub backend: String,
    /// Other DestSys values and the backend each goes to.
    #[serde(default)]
    pub dest: BTreeMap<String, String>,
    /// Schema file, relative to the schemas folder.
    pub schema: String,
    /// Safe to send twice. Queries usually are; pushes and transactions are not.
    #[serde(default)]
    pub idempotent: bool,
    /// Decode and check request bodies (default true).
    #[serde(default = "yes")]
    pub validate: bool,
    /// The backend expects the full layout: pad old-layout requests with
    /// blank trailing conditions (catalog section C).
    #[serde(default)]
    pub pad_trailing: bool,
    /// Overrides the backend's request timeout for this code.
    #[serde(default)]
    pub request_timeout_ms: Option<u64>,
    /// Resends allowed on this idempotent route after a failure that may
    /// have reached the backend (default 1). Never used on other routes.
    #[serde(default = "one")]
    pub retries: u32,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// Problems reading the file itself.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Toml {
        path: String,
        source: toml::de::Error,
    },
}

impl RawConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut cfg: RawConfig = toml::from_str(&text).map_err(|source| ConfigError::Toml {
            path: path.display().to_string(),
            source,
        })?;
        cfg.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(cfg)
    }

    /// A path from the config, taken relative to the config's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

/// Settings ops give on the command line; each overrides the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `(None, n)` sets every backend; `(Some(id), n)` one backend.
    pub pool_max: Vec<(Option<String>, usize)>,
    /// `(None, mode)` sets every backend; `(Some(id), mode)` one backend.
    pub pool_mode: Vec<(Option<String>, BackendMode)>,
    pub pool_min_idle: Option<usize>,
    pub pool_idle_timeout_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_in_flight: Option<usize>,
}

impl RawConfig {
    /// Applies command-line overrides. An override naming an unknown
    /// backend is an error, not silently ignored.
    pub fn apply(&mut self, o: &Overrides) -> Result<(), String> {
        for (id, n) in &o.pool_max {
            for b in self.backends_named("--pool-max", id.as_deref())? {
                b.pool.max = *n;
            }
        }
        for (id, mode) in &o.pool_mode {
            for b in self.backends_named("--pool-mode", id.as_deref())? {
                b.mode = *mode;
            }
        }
        for b in &mut self.backends {
            if let Some(v) = o.pool_min_idle {
                b.pool.min_idle = v;
            }
            if let Some(v) = o.pool_idle_timeout_ms {
                b.pool.idle_timeout_ms = v;
            }
            if let Some(v) = o.connect_timeout_ms {
                b.timeouts.connect_ms = v;
            }
            if let Some(v) = o.request_timeout_ms {
                b.timeouts.request_ms = v;
            }
        }
        if let Some(v) = o.max_connections {
            self.gateway.max_connections = v;
        }
        if let Some(v) = o.max_in_flight {
            self.gateway.max_in_flight = v;
        }
        Ok(())
    }
}

impl RawConfig {
    /// The backends an override applies to: all of them, or the one named.
    fn backends_named(
        &mut self,
        flag: &str,
        id: Option<&str>,
    ) -> Result<Vec<&mut BackendConfig>, String> {
        let picked: Vec<&mut BackendConfig> = self
            .backends
            .iter_mut()
            .filter(|b| id.is_none_or(|id| b.id == id))
            .collect();
        match id {
            Some(id) if picked.is_empty() => Err(format!("{flag} names unknown backend {id}")),
            _ => Ok(picked),
        }
    }
}

/// Parses `--pool-mode` values: `MODE` or `BACKEND=MODE`, MODE one of
/// long, short, multiplex.
pub fn parse_pool_mode(s: &str) -> Result<(Option<String>, BackendMode), String> {
    let (id, m) = match s.split_once('=') {
        Some((id, m)) => (Some(id.trim().to_string()), m),
        None => (None, s),
    };
    let mode = match m.trim() {
        "long" => BackendMode::Long,
        "short" => BackendMode::Short,
        "multiplex" => BackendMode::Multiplex,
        _ => {
            return Err(format!(
                "\"{s}\": expected MODE or BACKEND=MODE, MODE one of long, short, multiplex"
            ))
        }
    };
    Ok((id, mode))
}

/// Parses `--pool-max` values: `N` or `BACKEND=N`.
pub fn parse_pool_max(s: &str) -> Result<(Option<String>, usize), String> {
    let (id, n) = match s.split_once('=') {
        Some((id, n)) => (Some(id.trim().to_string()), n),
        None => (None, s),
    };
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("\"{s}\": expected N or BACKEND=N"))?;
    if n == 0 {
        return Err(format!("\"{s}\": a pool needs at least 1 connection"));
    }
    Ok((id, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> RawConfig {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml")).unwrap();
        toml::from_str(&text).unwrap()
    }

    fn mode_of(raw: &RawConfig, id: &str) -> BackendMode {
        raw.backends.iter().find(|b| b.id == id).unwrap().mode
    }

    #[test]
    fn pool_mode_override_sets_one_backend_or_all() {
        let mut raw = shipped();
        let one = Overrides {
            pool_mode: vec![parse_pool_mode("SCF=multiplex").unwrap()],
            ..Overrides::default()
        };
        raw.apply(&one).unwrap();
        assert_eq!(mode_of(&raw, "SCF"), BackendMode::Multiplex);
        assert_eq!(mode_of(&raw, "IBP"), BackendMode::Long);
        let all = Overrides {
            pool_mode: vec![parse_pool_mode("short").unwrap()],
            ..Overrides::default()
        };
        raw.apply(&all).unwrap();
        assert!(raw.backends.iter().all(|b| b.mode == BackendMode::Short));
    }

    #[test]
    fn pool_overrides_naming_an_unknown_backend_are_refused() {
        let mut raw = shipped();
        for o in [
            Overrides {
                pool_mode: vec![parse_pool_mode("NOPE=long").unwrap()],
                ..Overrides::default()
            },
            Overrides {
                pool_max: vec![parse_pool_max("NOPE=4").unwrap()],
                ..Overrides::default()
            },
        ] {
            let e = raw.apply(&o).unwrap_err();
            assert!(e.contains("unknown backend NOPE"), "{e}");
        }
    }

    #[test]
    fn pool_mode_values_are_checked() {
        assert_eq!(
            parse_pool_mode(" SCF = long ").unwrap(),
            (Some("SCF".to_string()), BackendMode::Long)
        );
        let e = parse_pool_mode("SCF=fast").unwrap_err();
        assert!(e.contains("long, short, multiplex"), "{e}");
    }
}
