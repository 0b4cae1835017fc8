//! What each subcommand does, in the library so tests can call it.
//!
//! `Running` is the whole gateway of `txgate serve`: listeners, simulated
//! backends when asked for, the observers (metrics, journal), the reloader
//! and the admin port, started together and stopped in order.

use crate::admin::{AdminError, AdminServer, AdminState};
use crate::config::{Overrides, RawConfig};
use crate::gateway::Gateway;
use crate::journal::{Journal, JournalError};
use crate::metrics::Metrics;
use crate::observe::Observer;
use crate::reload::{ConfigSource, ReloadError, Reloadable, Reloader};
use crate::server::Server;
use crate::sim::Simulator;
use crate::snapshot::{CheckFailed, Snapshot};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Why a command could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Check(#[from] CheckFailed),
    #[error("{0}")]
    Override(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Sim(#[from] crate::sim::SimError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Admin(#[from] AdminError),
}

impl From<ReloadError> for AppError {
    fn from(e: ReloadError) -> Self {
        match e {
            ReloadError::Config(e) => AppError::Config(e),
            ReloadError::Check(e) => AppError::Check(e),
            ReloadError::Override(s) => AppError::Override(s),
            other => AppError::Override(other.to_string()),
        }
    }
}

/// Loads, overrides and checks a config: what `txgate check` does.
pub fn load_checked(path: &Path, overrides: &Overrides) -> Result<Snapshot, AppError> {
    let mut raw = RawConfig::load(path)?;
    raw.apply(overrides).map_err(AppError::Override)?;
    Ok(Snapshot::build(raw, None)?)
}

/// How `txgate serve` starts: the config file and everything the command
/// line changes. A reload re-reads the file with the same changes.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    pub overrides: Overrides,
    /// Replaces the first listener's address.
    pub listen: Option<SocketAddr>,
    /// A simulator for every backend.
    pub simulate: bool,
    /// Replaces `[admin] address`.
    pub admin: Option<SocketAddr>,
    pub no_admin: bool,
    /// Replaces `[journal] path`.
    pub journal: Option<PathBuf>,
    pub no_journal: bool,
}

/// A gateway bound and ready, with its simulated backends if asked for,
/// its observers, its reloader and (from a file) its admin port.
pub struct Running {
    pub server: Server,
    pub simulators: Vec<(Arc<Simulator>, SocketAddr)>,
    sim_listeners: Vec<TcpListener>,
    metrics: Arc<Metrics>,
    journal: Option<Arc<Journal>>,
    reloader: Arc<Reloader>,
    admin_state: Arc<AdminState>,
    admin: Option<AdminServer>,
}

impl Running {
    /// Binds simulators (when `simulate`), then the gateway's listeners and
    /// the admin port; opens the journal. Backend addresses with port 0 are
    /// replaced by the simulators' ports.
    pub async fn start(
        path: &Path,
        overrides: &Overrides,
        listen: Option<SocketAddr>,
        simulate: bool,
    ) -> Result<Running, AppError> {
        Self::start_with(
            path,
            &StartOptions {
                overrides: overrides.clone(),
                listen,
                simulate,
                ..StartOptions::default()
            },
        )
        .await
    }

    /// As `start`, with every option of `txgate serve`.
    pub async fn start_with(path: &Path, opts: &StartOptions) -> Result<Running, AppError> {
        let mut source = ConfigSource {
            path: path.to_path_buf(),
            overrides: opts.overrides.clone(),
            admin_address: opts.admin.map(|a| a.to_string()),
            no_admin: opts.no_admin,
            journal_path: opts.journal.clone(),
            no_journal: opts.no_journal,
            pinned: Default::default(),
        };
        let raw = source.load()?;
        let simulate = opts.simulate;
        let (raw, sims) = bind_simulators(raw, &|_| simulate).await?;
        source.pinned = sims
            .iter()
            .map(|(id, tcp)| Ok((id.clone(), tcp.local_addr()?.to_string())))
            .collect::<Result<_, std::io::Error>>()?;
        Self::launch(raw, sims, opts.listen, &|_, s| s, Some(source)).await
    }

    /// As `start`, from a config already read. `simulate` says which
    /// backends get a simulator; `customize` may adjust each one (tests make
    /// them record, or slow). There is no file to reload from, and neither
    /// the admin port nor the journal is started; metrics are kept.
    pub async fn from_raw(
        raw: RawConfig,
        listen: Option<SocketAddr>,
        simulate: &dyn Fn(&str) -> bool,
        customize: &dyn Fn(&str, Simulator) -> Simulator,
    ) -> Result<Running, AppError> {
        let (raw, sims) = bind_simulators(raw, simulate).await?;
        Self::launch(raw, sims, listen, customize, None).await
    }

    async fn launch(
        raw: RawConfig,
        sim_listeners: Vec<(String, TcpListener)>,
        listen: Option<SocketAddr>,
        customize: &dyn Fn(&str, Simulator) -> Simulator,
        source: Option<ConfigSource>,
    ) -> Result<Running, AppError> {
        let fixtures = raw.resolve(&raw.gateway.fixtures);
        let services = source.is_some();
        let snap = Snapshot::build(raw, None)?;
        let mut simulators = Vec::new();
        let mut listeners = Vec::new();
        for (id, tcp) in sim_listeners {
            let sim = customize(&id, Simulator::new(&snap, &id, &fixtures)?);
            simulators.push((Arc::new(sim), tcp.local_addr()?));
            listeners.push(tcp);
        }

        let metrics = Arc::new(Metrics::new(&snap));
        let journal = if services && snap.raw.journal.enabled {
            let j = Arc::new(Journal::open(&snap.raw.journal, &snap.raw, &snap)?);
            tracing::info!(path = %j.path().display(), "journal open");
            Some(j)
        } else {
            None
        };
        let admin_cfg = snap.raw.admin.clone();
        let mut gw = Gateway::new(snap).with_observer(metrics.clone() as Arc<dyn Observer>);
        let mut hooks: Vec<Arc<dyn Reloadable>> = vec![metrics.clone()];
        if let Some(j) = &journal {
            gw = gw.with_observer(j.clone() as Arc<dyn Observer>);
            hooks.push(j.clone());
        }
        let gw = Arc::new(gw);
        let reloader = Arc::new(Reloader::new(gw.clone(), source, hooks));
        let server = Server::bind(gw.clone(), listen).await?;
        let admin_state = Arc::new(AdminState::new(
            gw,
            metrics.clone(),
            journal.clone(),
            reloader.clone(),
            server.addresses(),
        ));
        let admin = if services && admin_cfg.enabled {
            match AdminServer::bind(&admin_cfg.address, admin_state.clone()).await {
                Ok(a) => Some(a),
                Err(e) if !admin_cfg.required => {
                    tracing::error!(
                        "{e}; serving without the admin port ([admin] required = true makes this fatal)"
                    );
                    None
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        Ok(Running {
            server,
            simulators,
            sim_listeners: listeners,
            metrics,
            journal,
            reloader,
            admin_state,
            admin,
        })
    }

    /// The admin port's address, when it is bound.
    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(AdminServer::local_addr)
    }

    /// Reloads for SIGHUP (the admin port's `POST /reload` uses the same one).
    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn journal(&self) -> Option<&Arc<Journal>> {
        self.journal.as_ref()
    }

    /// What the admin endpoints read, readiness included.
    pub fn admin_state(&self) -> &Arc<AdminState> {
        &self.admin_state
    }

    /// Serves until `stop` is cancelled. Readiness goes off at once; the
    /// listeners drain; then the journal is flushed and closed, the admin
    /// port stops, and every pool is drained.
    pub async fn run(self, stop: CancellationToken) {
        let sims_stop = CancellationToken::new();
        let admin_stop = CancellationToken::new();
        let mut tasks = Vec::new();
        for ((sim, _), tcp) in self.simulators.into_iter().zip(self.sim_listeners) {
            tasks.push(tokio::spawn(sim.run(tcp, sims_stop.clone())));
        }
        let admin_task = self.admin.map(|a| tokio::spawn(a.run(admin_stop.clone())));
        let state = self.admin_state.clone();
        state.set_serving(true);
        let unready = {
            let (state, stop) = (state.clone(), stop.clone());
            tokio::spawn(async move {
                stop.cancelled().await;
                state.set_serving(false);
            })
        };
        let gateway = self.server.gateway().clone();
        self.server.run(stop).await;
        state.set_serving(false);
        unready.abort();
        if let Some(j) = &self.journal {
            j.close().await;
        }
        admin_stop.cancel();
        if let Some(t) = admin_task {
            let _ = t.await;
        }
        for b in gateway.snapshot().backends.values() {
            b.pool.drain();
        }
        sims_stop.cancel();
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Binds a simulator's listener for each backend `simulate` picks, and
/// points the backend at it.
async fn bind_simulators(
    mut raw: RawConfig,
    simulate: &dyn Fn(&str) -> bool,
) -> Result<(RawConfig, Vec<(String, TcpListener)>), AppError> {
    let mut sims = Vec::new();
    for b in raw.backends.iter_mut().filter(|b| simulate(&b.id)) {
        let tcp = TcpListener::bind(b.address.as_str()).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("simulator for {} on {}: {e}", b.id, b.address),
            )
        })?;
        b.address = tcp.local_addr()?.to_string();
        sims.push((b.id.clone(), tcp));
    }
    Ok((raw, sims))
}
