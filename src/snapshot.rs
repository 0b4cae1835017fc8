//! The checked configuration: every reference resolved, every schema compiled.
//!
//! `Snapshot::build` is the only way to get one, and it reports every
//! problem it finds, not just the first. `txgate check` is `build` plus
//! printing; hot reload builds a new snapshot and swaps it in, and a
//! request keeps the snapshot it started with.

use crate::config::{
    BackendConfig, BackendMode, BodyFormat, GatewaySettings, RawConfig, RouteKind,
};
use crate::frame::{FrameCodec, Framing};
use crate::header::HeaderSpec;
use crate::header::Role;
use crate::pool::{MuxKey, Pool};
use crate::schema::Schema;
use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// txgate's limit on the TCP_DEFER_ACCEPT wait. Callers speak first, so a
/// longer wait only keeps silent connections in the kernel's queue.
const MAX_DEFER_ACCEPT_MS: u64 = 120_000;

/// A listener, checked.
#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    pub framing: Framing,
    pub body: BodyFormat,
    /// TCP_DEFER_ACCEPT in whole seconds (what the kernel takes); 0 is off.
    pub defer_accept_secs: u32,
}

/// A channel, checked: its ID as header bytes, its address binding, and
/// its rate limit (a GCRA limiter: one atomic per check, no lock).
#[derive(Debug, Clone)]
pub struct Channel {
    pub id: String,
    pub name: String,
    pub sources: Vec<IpNet>,
    pub limiter: Option<(Arc<governor::DefaultDirectRateLimiter>, u32)>,
}

impl Channel {
    /// An unbound channel may call from anywhere; a bound one only from its networks.
    pub fn allows_source(&self, ip: IpAddr) -> bool {
        self.sources.is_empty() || self.sources.iter().any(|n| n.contains(&ip))
    }
}

/// A backend, checked, with its connection pool.
#[derive(Debug)]
pub struct Backend {
    pub config: BackendConfig,
    pub address: SocketAddr,
    pub pool: Pool,
}

impl Backend {
    pub fn id(&self) -> &str {
        &self.config.id
    }
    pub fn codec(&self, max_body: usize) -> FrameCodec {
        FrameCodec::new(self.config.framing, max_body)
    }
}

/// A route, checked: the allow-list and DestSys map hold header bytes, so
/// the hot path compares slices and builds no strings.
#[derive(Debug)]
pub struct Route {
    pub code: String,
    pub name: String,
    pub kind: RouteKind,
    pub channels: Vec<Box<[u8]>>,
    pub backend: Arc<Backend>,
    pub dest: Vec<(Box<[u8]>, Arc<Backend>)>,
    pub schema: Arc<Schema>,
    pub idempotent: bool,
    pub validate: bool,
    pub pad_trailing: bool,
    pub request_timeout: Duration,
    pub retries: u32,
}

impl Route {
    pub fn allows_channel(&self, channel: &[u8]) -> bool {
        self.channels.iter().any(|c| &c[..] == channel)
    }

    /// The backend for a DestSys value; `None` when the route does not know it.
    pub fn backend_for(&self, dest: &[u8]) -> Option<&Arc<Backend>> {
        if dest.is_empty() {
            return Some(&self.backend);
        }
        self.dest
            .iter()
            .find(|(d, _)| &d[..] == dest)
            .map(|(_, b)| b)
            .or_else(|| (self.backend.id().as_bytes() == dest).then_some(&self.backend))
    }
}

/// Everything the message path reads, immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    pub settings: GatewaySettings,
    pub header: Arc<HeaderSpec>,
    pub listeners: Vec<Listener>,
    pub channels: HashMap<Box<[u8]>, Channel>,
    pub backends: BTreeMap<String, Arc<Backend>>,
    pub routes: HashMap<Box<[u8]>, Arc<Route>>,
    pub schemas: BTreeMap<String, Arc<Schema>>,
    pub raw: RawConfig,
}

/// Every problem `build` found.
#[derive(Debug, thiserror::Error)]
#[error("配置检查失败 (config check failed):\n  - {}", .0.join("\n  - "))]
pub struct CheckFailed(pub Vec<String>);

impl Snapshot {
    /// Checks `raw` and compiles it. Backends whose settings equal one in
    /// `previous` keep that backend's pool.
    pub fn build(raw: RawConfig, previous: Option<&Snapshot>) -> Result<Snapshot, CheckFailed> {
        let mut problems = Vec::new();

        let header = match HeaderSpec::load(&raw.resolve(&raw.gateway.header)) {
            Ok(h) => Some(Arc::new(h)),
            Err(e) => {
                problems.push(format!("header: {e}"));
                None
            }
        };

        let mut listeners = Vec::new();
        if raw.listeners.is_empty() {
            problems.push("no [[listener]] is configured".into());
        }
        for l in &raw.listeners {
            if l.defer_accept_ms > MAX_DEFER_ACCEPT_MS {
                problems.push(format!(
                    "listener {}: defer_accept_ms {} is over {MAX_DEFER_ACCEPT_MS} (callers speak first; a longer wait only holds silent connections)",
                    l.name, l.defer_accept_ms
                ));
            }
            match l.address.parse::<SocketAddr>() {
                Ok(address) => listeners.push(Listener {
                    name: l.name.clone(),
                    address,
                    framing: l.framing,
                    body: l.body,
                    // Rounded up: a wish for 300 ms still turns the option on.
                    defer_accept_secs: l.defer_accept_ms.div_ceil(1000) as u32,
                }),
                Err(e) => problems.push(format!(
                    "listener {}: address \"{}\" does not parse: {e}",
                    l.name, l.address
                )),
            }
        }

        let mut channels = HashMap::new();
        for c in &raw.channels {
            let mut sources = Vec::new();
            for s in &c.sources {
                match parse_net(s) {
                    Ok(n) => sources.push(n),
                    Err(e) => problems.push(format!("channel {}: source \"{s}\": {e}", c.id)),
                }
            }
            let limiter = match c.rate_limit {
                None => None,
                Some(rate) => match std::num::NonZeroU32::new(rate) {
                    None => {
                        problems.push(format!("channel {}: rate_limit must be at least 1", c.id));
                        None
                    }
                    Some(r) => {
                        let burst = c.burst.and_then(std::num::NonZeroU32::new).unwrap_or(r);
                        let quota = governor::Quota::per_second(r).allow_burst(burst);
                        Some((Arc::new(governor::RateLimiter::direct(quota)), rate))
                    }
                },
            };
            let key: Box<[u8]> = c.id.as_bytes().into();
            if channels
                .insert(
                    key,
                    Channel {
                        id: c.id.clone(),
                        name: c.name.clone(),
                        sources,
                        limiter,
                    },
                )
                .is_some()
            {
                problems.push(format!("channel {} is defined twice", c.id));
            }
        }

        let mut backends = BTreeMap::new();
        let mux_key = match &header {
            Some(h) => MuxKey {
                channel: h.range(Role::Channel),
                seq: h.range(Role::Seq),
            },
            None => MuxKey {
                channel: 0..0,
                seq: 0..0,
            },
        };
        for b in &raw.backends {
            let key_width = mux_key.channel.len() + 1 + mux_key.seq.len();
            if b.mode == BackendMode::Multiplex && key_width > crate::pool::MUX_ID_MAX {
                problems.push(format!(
                    "backend {}: multiplex mode matches answers by channel and SeqNo, {key_width} bytes with the header's widths; at most {} are supported",
                    b.id,
                    crate::pool::MUX_ID_MAX
                ));
            }
            if b.mode == BackendMode::Multiplex && b.body != BodyFormat::Fixed {
                problems.push(format!(
                    "backend {}: multiplex mode matches answers by header fields and needs body = fixed",
                    b.id
                ));
            }
            if b.body == BodyFormat::Auto {
                problems.push(format!(
                    "backend {}: body must be fixed or xml, not auto",
                    b.id
                ));
            }
            if b.pool.max == 0 {
                problems.push(format!("backend {}: pool.max must be at least 1", b.id));
            }
            if b.pool.min_idle > b.pool.max {
                problems.push(format!(
                    "backend {}: pool.min_idle {} is over pool.max {}",
                    b.id, b.pool.min_idle, b.pool.max
                ));
            }
            let address = match b.address.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(e) => {
                    problems.push(format!(
                        "backend {}: address \"{}\" does not parse: {e}",
                        b.id, b.address
                    ));
                    continue;
                }
            };
            let reused = previous
                .and_then(|p| p.backends.get(&b.id))
                .filter(|old| old.config == *b)
                .cloned();
            let backend = reused.unwrap_or_else(|| {
                Arc::new(Backend {
                    config: b.clone(),
                    address,
                    pool: Pool::new(b, address, raw.gateway.max_body, mux_key.clone()),
                })
            });
            if backends.insert(b.id.clone(), backend).is_some() {
                problems.push(format!("backend {} is defined twice", b.id));
            }
        }

        let schema_dir = raw.resolve(&raw.gateway.schemas);
        // Every schema in the folder is checked, used by a route or not.
        let mut schemas: BTreeMap<String, Arc<Schema>> = match crate::schema::load_dir(&schema_dir)
        {
            Ok(all) => all
                .into_values()
                .map(|s| (format!("{}.toml", s.code), Arc::new(s)))
                .collect(),
            Err(errors) => {
                problems.extend(errors.iter().map(|e| format!("schema: {e}")));
                BTreeMap::new()
            }
        };
        let mut routes: HashMap<Box<[u8]>, Arc<Route>> = HashMap::new();
        let code_width = header
            .as_ref()
            .and_then(|h| h.field(crate::header::Role::Code))
            .map(|f| f.width);
        for r in &raw.routes {
            let at = format!("route {} ({})", r.code, r.name);
            if let Some(w) = code_width {
                if r.code.len() != w || !r.code.bytes().all(|b| b.is_ascii_digit()) {
                    problems.push(format!("{at}: code must be {w} digits"));
                }
            }
            if routes.contains_key(r.code.as_bytes()) {
                problems.push(format!(
                    "{at}: transaction code {} is given to two routes; merge them into one (catalog note on 2075)",
                    r.code
                ));
                continue;
            }
            let mut ok = true;
            let mut allowed = Vec::new();
            for c in &r.channels {
                if !channels.contains_key(c.as_bytes()) {
                    problems.push(format!("{at}: unknown channel {c}"));
                    ok = false;
                }
                allowed.push(c.as_bytes().into());
            }
            let backend = backends.get(&r.backend).cloned();
            if backend.is_none() {
                problems.push(format!("{at}: unknown backend {}", r.backend));
                ok = false;
            }
            let mut dest = Vec::new();
            for (d, b) in &r.dest {
                match backends.get(b) {
                    Some(b) => dest.push((Box::<[u8]>::from(d.as_bytes()), b.clone())),
                    None => {
                        problems.push(format!("{at}: DestSys {d} names unknown backend {b}"));
                        ok = false;
                    }
                }
            }
            let schema = match schemas.get(&r.schema) {
                Some(s) => Some(s.clone()),
                None => match Schema::load(&schema_dir.join(&r.schema)) {
                    Ok(s) => {
                        if s.code != r.code {
                            problems.push(format!(
                                "{at}: schema {} is for code {}, not {}",
                                r.schema, s.code, r.code
                            ));
                        }
                        let s = Arc::new(s);
                        schemas.insert(r.schema.clone(), s.clone());
                        Some(s)
                    }
                    Err(e) => {
                        problems.push(format!("{at}: schema {}: {e}", r.schema));
                        None
                    }
                },
            };
            if let Some(s) = &schema {
                if r.pad_trailing && !s.request.has_trailing() {
                    problems.push(format!(
                        "{at}: pad_trailing is set but schema {} has no trailing fields",
                        r.schema
                    ));
                }
            }
            let (Some(backend), Some(schema), true) = (backend, schema, ok) else {
                continue;
            };
            let request_timeout = Duration::from_millis(
                r.request_timeout_ms
                    .unwrap_or(backend.config.timeouts.request_ms),
            );
            routes.insert(
                r.code.as_bytes().into(),
                Arc::new(Route {
                    code: r.code.clone(),
                    name: r.name.clone(),
                    kind: r.kind,
                    channels: allowed,
                    backend,
                    dest,
                    schema,
                    idempotent: r.idempotent,
                    validate: r.validate,
                    pad_trailing: r.pad_trailing,
                    request_timeout,
                    retries: r.retries,
                }),
            );
        }

        match header {
            Some(header) if problems.is_empty() => Ok(Snapshot {
                settings: raw.gateway.clone(),
                header,
                listeners,
                channels,
                backends,
                routes,
                schemas,
                raw,
            }),
            _ => Err(CheckFailed(problems)),
        }
    }

    pub fn route(&self, code: &[u8]) -> Option<&Arc<Route>> {
        self.routes.get(code)
    }

    pub fn channel(&self, id: &[u8]) -> Option<&Channel> {
        self.channels.get(id)
    }

    /// Routes sorted by code, for listings.
    pub fn routes_sorted(&self) -> Vec<&Arc<Route>> {
        let mut v: Vec<_> = self.routes.values().collect();
        v.sort_by(|a, b| a.code.cmp(&b.code));
        v
    }

    /// The codes one backend serves (for the simulator).
    pub fn codes_served_by(&self, backend: &str) -> Vec<&Arc<Route>> {
        self.routes_sorted()
            .into_iter()
            .filter(|r| r.backend.id() == backend || r.dest.iter().any(|(_, b)| b.id() == backend))
            .collect()
    }

    pub fn is_long(&self, backend: &str) -> bool {
        self.backends
            .get(backend)
            .is_some_and(|b| b.config.mode == BackendMode::Long)
    }
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|e| e.to_string())
}
