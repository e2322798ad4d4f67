//! Recipes: what training, evaluating, predicting and explaining take for each kind of
//! model, over a [`Source`] of data (the extension's is SPI, as the calling user; tests'
//! are in memory) and an [`Offload`] (rdl's background worker, or nothing).
//!
//! - `tabular`: binary, regression and multiclass models — train, score, evaluate;
//! - `ranking`: ranking models — the training data and training; `recommend`: the item
//!   index, an entity's top k, evaluation next to the baselines;
//! - `explain`: explanations, a prediction's detail, importance; `in_context`: answers
//!   from the pretrained model without training, `in_context_explain` their explanations;
//! - shared: `options` (rdl_train's), `args` (the SQL functions' argument checks),
//!   `access` (who may use or modify a task), `labels` (examples, classes, samples), `gather`
//!   (pieces within the memory budget, the hidden target), `one` (one entity, what-if),
//!   `report` (metrics), `stored` (what a model row holds), `servable` (a loaded model),
//!   `show` (contexts as JSON).
//!
//! The training loop itself is `train::fit`, shared by every kind.

pub mod access;
pub mod adhoc;
pub mod args;
pub mod error;
pub mod explain;
pub mod gather;
pub mod in_context;
pub mod in_context_explain;
pub mod labels;
pub mod one;
pub mod options;
mod rank_data;
pub mod ranking;
pub mod recommend;
pub mod report;
pub mod servable;
pub mod show;
pub mod source;
pub mod stored;
pub mod tabular;

pub use error::{check_applies, Error, Needs, Result};
pub use servable::Servable;
pub use source::{Event, Gathered, Here, Label, Labeled, Offload, Source, Split};

#[cfg(test)]
mod tests;
