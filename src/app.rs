//! What each subcommand does, in the library so tests can call it.

use crate::config::{Overrides, RawConfig};
use crate::gateway::Gateway;
use crate::server::Server;
use crate::sim::Simulator;
use crate::snapshot::{CheckFailed, Snapshot};
use std::net::SocketAddr;
use std::path::Path;
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
}

/// Loads, overrides and checks a config: what `txgate check` does.
pub fn load_checked(path: &Path, overrides: &Overrides) -> Result<Snapshot, AppError> {
    let mut raw = RawConfig::load(path)?;
    raw.apply(overrides).map_err(AppError::Override)?;
    Ok(Snapshot::build(raw, None)?)
}

/// A gateway bound and ready, with its simulated backends if asked for.
pub struct Running {
    pub server: Server,
    pub simulators: Vec<(Arc<Simulator>, SocketAddr)>,
    sim_listeners: Vec<TcpListener>,
}

impl Running {
    /// Binds simulators (when `simulate`), then the gateway's listeners.
    /// Backend addresses with port 0 are replaced by the simulators' ports.
    pub async fn start(
        path: &Path,
        overrides: &Overrides,
        listen: Option<SocketAddr>,
        simulate: bool,
    ) -> Result<Running, AppError> {
        let mut raw = RawConfig::load(path)?;
        raw.apply(overrides).map_err(AppError::Override)?;
        Self::from_raw(raw, listen, &|_| simulate, &|_, s| s).await
    }

    /// As `start`, from a config already read. `simulate` says which
    /// backends get a simulator; `customize` may adjust each one (tests make
    /// them record, or slow).
    pub async fn from_raw(
        mut raw: RawConfig,
        listen: Option<SocketAddr>,
        simulate: &dyn Fn(&str) -> bool,
        customize: &dyn Fn(&str, Simulator) -> Simulator,
    ) -> Result<Running, AppError> {
        let mut sim_listeners = Vec::new();
        {
            for b in raw.backends.iter_mut().filter(|b| simulate(&b.id)) {
                let tcp = TcpListener::bind(b.address.as_str()).await.map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("simulator for {} on {}: {e}", b.id, b.address),
                    )
                })?;
                b.address = tcp.local_addr()?.to_string();
                sim_listeners.push((b.id.clone(), tcp));
            }
        }
        let fixtures = raw.resolve(&raw.gateway.fixtures);
        let snap = Snapshot::build(raw, None)?;
        let mut simulators = Vec::new();
        let mut listeners = Vec::new();
        for (id, tcp) in sim_listeners {
            let sim = customize(&id, Simulator::new(&snap, &id, &fixtures)?);
            simulators.push((Arc::new(sim), tcp.local_addr()?));
            listeners.push(tcp);
        }
        let gw = Arc::new(Gateway::new(snap));
        let server = Server::bind(gw, listen).await?;
        Ok(Running {
            server,
            simulators,
            sim_listeners: listeners,
        })
    }

    /// Serves until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let sims_stop = CancellationToken::new();
        let mut tasks = Vec::new();
        for ((sim, _), tcp) in self.simulators.into_iter().zip(self.sim_listeners) {
            tasks.push(tokio::spawn(sim.run(tcp, sims_stop.clone())));
        }
        self.server.run(stop).await;
        sims_stop.cancel();
        for t in tasks {
            let _ = t.await;
        }
    }
}
