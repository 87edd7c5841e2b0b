//! `--stream`: whether a load streams layers from the mapped file, and the placement it streams
//! with (pure arithmetic over the [`Ledger`]).

use serde::Serialize;

use super::ledger::{ArenaError, Ledger, Placement};

/// `--stream`: whether layers are streamed from the mapped file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamMode {
    /// Stream only when the weights do not fit in the budget.
    #[default]
    Auto,
    /// Always stream (with the smallest window when there is no budget).
    On,
    /// Never stream.
    Off,
}

impl std::str::FromStr for StreamMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(StreamMode::Auto),
            "on" => Ok(StreamMode::On),
            "off" => Ok(StreamMode::Off),
            other => Err(format!("expected auto, on or off, not `{other}`")),
        }
    }
}

impl StreamMode {
    /// The placement to stream with, or `None` to load fully resident. `weight_budget` is what
    /// the budget leaves for host weights after the anonymous memory (KV, compute, outputs);
    /// the last `n_gpu` layers are offloaded and not counted in it.
    pub fn placement(
        self,
        ledger: &Ledger,
        n_gpu: usize,
        weight_budget: Option<u64>,
    ) -> Result<Option<Placement>, ArenaError> {
        let plan = |budget| Placement::plan_with_gpu(ledger, n_gpu, budget);
        let n_host = ledger.layers.len().saturating_sub(n_gpu);
        let host_bytes = ledger.global_bytes
            + ledger.layers[..n_host]
                .iter()
                .map(|l| l.n_bytes)
                .sum::<u64>();
        match (self, weight_budget) {
            (StreamMode::Off, _) | (StreamMode::Auto, None) => Ok(None),
            (StreamMode::Auto, Some(b)) if host_bytes <= b => Ok(None),
            (_, Some(b)) => plan(b).map(Some),
            // On without a budget: stream every host layer through a window of two.
            (StreamMode::On, None) => {
                let b = ledger.global_bytes + 2 * ledger.max_layer_bytes();
                plan(b.min(host_bytes.saturating_sub(1))).map(Some)
            }
        }
    }
}
