//! A model ready to serve: decoded from its stored row, with the sampler plan it reads
//! with. The backends and the background worker use the same type.

use super::error::{Error, Result};
use super::stored::StoredConfig;
use crate::encode::Encoder;
use crate::pql::{Target, TaskSpec};
use crate::rank::train::TrainedRanker;
use crate::sampler::Plan;
use crate::schema::{SchemaGraph, SemanticType};
use crate::train::TrainedModel;

/// A ranking model and what recommending with it needs.
pub struct Ranker {
    pub ranker: TrainedRanker,
    /// The encoder for item contexts (the item token cap).
    pub item_encoder: Encoder,
    pub item_table: String,
}

// One per loaded model: the size difference between kinds does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Model {
    /// Binary, regression or multiclass.
    Tabular(TrainedModel),
    Ranking(Ranker),
}

pub struct Servable {
    /// `rdl.models.id` and version.
    pub id: i64,
    pub version: i32,
    pub stored: StoredConfig,
    /// Restricted to the tables the model was trained on.
    pub plan: Plan,
    pub model: Model,
}

/// The hint to retrain `task`.
pub(crate) fn retrain(task: &str) -> String {
    format!("Retrain: CALL rdl_train('{}');", task.replace('\'', "''"))
}

impl Servable {
    /// Decodes model `id` of `task` from its stored weights and config, builds its plan
    /// from `graph` (the caller's view of the catalog), and checks that every column it
    /// reads is still there and of the kind it was (42703 / 42804).
    pub fn load(
        task: &str,
        spec: &TaskSpec,
        (id, version): (i64, i32),
        weights: &[u8],
        config: serde_json::Value,
        graph: &SchemaGraph,
    ) -> Result<Servable> {
        let unreadable = |e: String| {
            Error::new(
                "XX000",
                format!("model {id} of task \"{task}\" has an unreadable config: {e}"),
            )
            .hint(retrain(task))
        };
        let stored: StoredConfig =
            serde_json::from_value(config).map_err(|e| unreadable(e.to_string()))?;
        stored.check().map_err(unreadable)?;
        let mut plan = Plan::new(graph, stored.sampler);
        // Read what the model was trained on, nothing more (a table added since is
        // unknown to it).
        if !stored.tables.is_empty() {
            plan.tables.retain(|t, _| stored.tables.contains(t));
            plan.edges.retain(|e| {
                plan.tables.contains_key(&e.child) && plan.tables.contains_key(&e.parent)
            });
        }
        let model = match &spec.target {
            Target::ListDistinct { item_table, .. } => {
                let ranker = TrainedRanker::from_bytes(weights)?;
                match plan.tables.get(item_table) {
                    Some(tp) if tp.key_columns.len() == 1 => {}
                    _ => {
                        return Err(Error::new(
                            "0A000",
                            format!("task \"{task}\": the items of {item_table} need a single-column primary key"),
                        ))
                    }
                }
                Model::Ranking(Ranker {
                    item_encoder: ranker.item_encoder(),
                    ranker,
                    item_table: item_table.clone(),
                })
            }
            _ => Model::Tabular(TrainedModel::from_bytes(weights)?),
        };
        let s = Servable {
            id,
            version,
            stored,
            plan,
            model,
        };
        check_columns(task, s.encoder(), &s.plan)?;
        Ok(s)
    }

    /// The encoder of the model's (entity) contexts.
    pub fn encoder(&self) -> &Encoder {
        match &self.model {
            Model::Tabular(m) => &m.encoder,
            Model::Ranking(r) => &r.ranker.encoder,
        }
    }

    pub fn tabular(&self) -> Option<&TrainedModel> {
        match &self.model {
            Model::Tabular(m) => Some(m),
            Model::Ranking(_) => None,
        }
    }

    pub fn ranker(&self) -> Option<&Ranker> {
        match &self.model {
            Model::Ranking(r) => Some(r),
            Model::Tabular(_) => None,
        }
    }
}

/// Errors when a column the model was trained on is gone or no longer of the kind it was
/// (42703 / 42804, with a hint to retrain) instead of reading something else silently.
pub fn check_columns(task: &str, encoder: &Encoder, plan: &Plan) -> Result<()> {
    for name in encoder.columns.keys() {
        let Some((tp, col)) = plan.tables.iter().find_map(|(t, tp)| {
            let c = name.strip_prefix(t.as_str())?.strip_prefix('.')?;
            Some((tp, c))
        }) else {
            continue;
        };
        // A count of children is the sampler's, not a column of the table.
        if col.starts_with(crate::sampler::COUNT_PREFIX) {
            continue;
        }
        let Some(v) = tp.values.iter().find(|v| v.name == col) else {
            return Err(Error::new(
                "42703",
                format!("column {col} of {} no longer exists", tp.table),
            )
            .detail(format!(
                "The model of task \"{task}\" was trained reading it."
            ))
            .hint(retrain(task)));
        };
        let now_numeric = v.semantic == SemanticType::Numerical;
        let was_numeric = encoder.read_as_numeric(name);
        // Older stored models record no semantics: a column all NULL in training
        // looks non-numeric there, so only numeric → non-numeric is certain.
        let changed = if encoder.semantics.is_empty() {
            was_numeric && !now_numeric
        } else {
            was_numeric != now_numeric
        };
        if changed {
            return Err(Error::new(
                "42804",
                format!("column {col} of {} changed type", tp.table),
            )
            .detail(format!(
                "The model of task \"{task}\" was trained reading it as {}; it is {:?} now.",
                if was_numeric {
                    "a number"
                } else {
                    "a category, text or time"
                },
                v.semantic
            ))
            .hint(retrain(task)));
        }
    }
    Ok(())
}
