//! Explaining one prediction of a trained model: per-token attributions (see
//! `model/explain.rs`) traced back to the rows and cells of the context they encode.

use super::ensemble::add;
use super::{Head, TrainError, TrainedModel};
use crate::encode::Subgraph;
use crate::model::Batch;

/// One token's share of a prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenShare {
    /// `(subgraph row, index in its values)`; `None` for the target token.
    pub source: Option<(usize, usize)>,
    /// Attention rollout weight at the target (non-negative; all tokens sum to 1).
    pub rollout: f32,
    /// Gradient × input (signed: positive pushed the explained output up).
    pub gradient: f32,
}

#[derive(Debug, Clone)]
pub struct Explanation {
    /// The calibrated prediction (as [`TrainedModel::predict`]).
    pub prediction: Vec<f32>,
    /// The output explained: 0, or the predicted class.
    pub output_index: usize,
    pub tokens: Vec<TokenShare>,
}

impl TrainedModel {
    /// Explains the model's prediction for one context: an ensemble's attributions are
    /// its members' averaged, token by token.
    pub fn explain(&self, sg: &Subgraph) -> Result<Explanation, TrainError> {
        let (ec, sources) = self.encoder.encode_traced(sg);
        let prediction = self.predict(std::slice::from_ref(&ec))?;
        let output_index = match self.head {
            Head::Multiclass { .. } => {
                prediction
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |b, (i, &p)| if p > b.1 { (i, p) } else { b },
                    )
                    .0
            }
            _ => 0,
        };
        let batch = Batch::new(&[&ec], &self.model_cfg, self.dims.n_buckets, &self.device)?;
        let (mut rollout, mut grad) = (Vec::new(), Vec::new());
        for m in &self.members {
            let a = m.model.attribute(&batch, output_index)?;
            add(&mut rollout, &a.rollout);
            add(&mut grad, &a.grad_x_input);
        }
        let k = self.members.len().max(1) as f32;
        let tokens = sources
            .into_iter()
            .zip(rollout.into_iter().map(|v| v / k))
            .zip(grad.into_iter().map(|v| v / k))
            .map(|((source, rollout), gradient)| TokenShare {
                source,
                rollout,
                gradient,
            })
            .collect();
        Ok(Explanation {
            prediction,
            output_index,
            tokens,
        })
    }
}
