//! What is stored in `rdl.models.config` next to a model's weights. The field names are
//! the stored form: rows written by earlier versions must keep reading.

use serde::{Deserialize, Serialize};

use super::options::TrainOptions;
use crate::sampler::SamplerConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredConfig {
    pub sampler: SamplerConfig,
    /// Every table the model was trained to read: a caller who may not read one of them
    /// gets 42501 rather than a silently poorer prediction.
    #[serde(default)]
    pub tables: Vec<String>,
    pub options: TrainOptions,
    pub train_examples: usize,
    pub val_examples: usize,
    /// A multiclass model's classes, in the order of its outputs.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Their frequencies among the training examples (the baseline a model must beat).
    #[serde(default)]
    pub class_prior: Vec<f64>,
    /// A ranking model's item table and candidate statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranking: Option<RankingInfo>,
}

/// What a ranking model stores besides the common fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankingInfo {
    pub item_table: String,
    pub k: usize,
    /// Share of the selection split's label items that were among the candidates.
    pub val_candidate_recall: Option<f64>,
    pub item_contexts: usize,
}

impl StoredConfig {
    /// Refuses a sampler configuration no `rdl_train` could have written (a row is read
    /// back from a table: its sizes bound what loading it allocates).
    pub fn check(&self) -> Result<(), String> {
        let s = self.sampler;
        if (1..=6).contains(&s.depth)
            && (1..=1000).contains(&s.fanout)
            && (1..=10_000).contains(&s.max_rows)
        {
            Ok(())
        } else {
            Err(format!(
                "out-of-range sampler configuration (depth {}, fanout {}, max_rows {})",
                s.depth, s.fanout, s.max_rows
            ))
        }
    }
}
