//! `tidemark bench`: the engine-only chain (generator -> parse -> watermark -> dedup ->
//! reorder -> null sink) at several worker counts, reported as figures, never asserted.

/// Options of `tidemark bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Events per configuration.
    #[arg(long, default_value_t = 4_000_000)]
    pub events: u64,
}

/// Runs the benchmark and prints its figures.
pub fn run(_options: &BenchOptions) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
