//! `txgate replay` (being written).

/// Arguments of `txgate replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
#[error("replay is not built yet")]
pub struct ReplayError;

/// Runs a replay; `Ok(true)` when every fixture passed.
pub async fn run(_args: ReplayArgs) -> Result<bool, ReplayError> {
    Err(ReplayError)
}
