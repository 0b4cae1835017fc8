//! `txgate bench` (being written).

/// Arguments of `txgate bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {}

/// Why a bench could not run.
#[derive(Debug, thiserror::Error)]
#[error("bench is not built yet")]
pub struct BenchError;

/// Runs a load test; `Ok(true)` when it ran with no errors.
pub async fn run(_args: BenchArgs) -> Result<bool, BenchError> {
    Err(BenchError)
}
