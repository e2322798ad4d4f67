//! `rdl_train`'s options: what the user may set, their defaults and their bounds.

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use crate::model::ModelConfig;
use crate::sampler::SamplerConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainOptions {
    /// `tiny` (tests, quick trials), `small` (CPU default) or `large` (GPU).
    pub size: String,
    pub epochs: usize,
    /// The peak learning rate; `None`: the recipe's own ([`TABULAR_LR`], [`RANKING_LR`]).
    pub lr: Option<f64>,
    pub batch_size: usize,
    pub patience: usize,
    pub seed: u64,
    /// Wall-clock budget of the whole call (gathering included), seconds.
    pub time_budget_s: f64,
    /// Training examples used at most (a seeded sample of the train split).
    pub max_train: usize,
    /// Validation examples used at most (a seeded sample of the validation split).
    pub max_val: usize,
    pub depth: u8,
    pub fanout: u32,
    pub max_rows: usize,
    /// Time constant, in epochs, of the moving average of the weights that is validated
    /// and kept (0: the raw weights); `None`: the recipe's own ([`tabular_ema`]).
    pub ema: Option<f64>,
    /// Whether the entity's row also carries, per foreign key referencing it, how many
    /// rows reference it up to the anchor ([`SamplerConfig::counts`]).
    pub counts: bool,
    /// Networks trained at most and averaged: the second and later only while the time
    /// budget left holds another run as long as the first ([`DEFAULT_MEMBERS`]).
    pub members: usize,
    /// Where the network's weights start.
    pub init: Init,
}

/// Where a network's weights start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// A seeded random initialisation.
    #[default]
    Scratch,
    /// The reader of the shipped in-context model (every parameter but the output head),
    /// fine-tuned on the task; the task's columns dealt to its slots ([`crate::icl`]).
    Pretrained,
}

/// Networks a model averages at most by default: one. Measured on five generated pairs
/// (`bench/generality/README.md`): three networks, trained while the budget held them,
/// moved test AUROC by +0.0004 to +0.0037 on four binary tasks (+0.0015 on average) and
/// did not lift a multiclass one, for three times the training and the prediction time.
pub const DEFAULT_MEMBERS: usize = 1;

/// The default learning rate of binary, regression and multiclass models. Measured on
/// rel-f1 (`bench/relbench.sh`) and the synthetic shop (churn, spend): 0.001 was as good
/// or better than 0.003 on every task and seed tried, on driver-dnf by far (test AUROC
/// 0.81–0.84 against 0.54–0.72: at 0.003 the best epoch is already a poor one).
pub const TABULAR_LR: f64 = 1e-3;
/// The default time constant (epochs) of the weights' moving average, by head. Measured
/// with `bench/generality.sh` (18 generated pairs) and `bench/relbench.sh` (seeds 0-2):
/// classification gained (9 of 14 generated pairs better, +0.003 on average; rel-f1
/// driver-dnf and driver-top3 unchanged on average), regression did not (rel-f1
/// driver-position worse on all three seeds, 2.717 -> 2.790; two generated pairs better,
/// one worse), so regression keeps the raw weights.
pub fn tabular_ema(regression: bool) -> f64 {
    if regression {
        0.0
    } else {
        1.0
    }
}

/// The default learning rate of ranking models (its own benchmarks, `bench/recommend.sh`).
pub const RANKING_LR: f64 = 3e-3;

impl Default for TrainOptions {
    fn default() -> Self {
        let s = SamplerConfig::default();
        TrainOptions {
            size: "small".into(),
            epochs: 20,
            lr: None,
            batch_size: 64,
            patience: 4,
            seed: 0,
            time_budget_s: 600.0,
            max_train: 20_000,
            max_val: 100_000,
            depth: s.depth,
            fanout: s.fanout,
            max_rows: s.max_rows,
            ema: None,
            counts: s.counts,
            members: DEFAULT_MEMBERS,
            init: Init::Scratch,
        }
    }
}

impl TrainOptions {
    /// Reads options from the user's jsonb (`null`: every default) and checks them (22023).
    pub fn from_json(v: Option<serde_json::Value>) -> Result<TrainOptions> {
        let opts: TrainOptions = match v {
            None | Some(serde_json::Value::Null) => TrainOptions::default(),
            // serde would read a struct from an array too: `[]` must not mean "defaults".
            Some(v) if !v.is_object() => {
                return Err(Error::new("22023", "training options must be a JSON object")
                    .detail(format!("got {v}"))
                    .hint("E.g. CALL rdl_train('task', '{\"epochs\": 5, \"time_budget_s\": 300}')."))
            }
            Some(v) => serde_json::from_value(v).map_err(|e| {
                Error::new("22023", "invalid training options")
                    .detail(e.to_string())
                    .hint("Options: size, epochs, lr, batch_size, patience, seed, time_budget_s, max_train, max_val, depth, fanout, max_rows, ema, counts, members, init.")
            })?,
        };
        let bad = |what: &str| {
            Err(Error::new("22023", format!("invalid training option: {what}"))
                .hint("epochs, batch_size, max_train and max_val must be at least 1, lr and time_budget_s positive, depth 1 to 6, fanout 1 to 1000, max_rows 1 to 10000, ema 0 to 100, members 1 to 16."))
        };
        if opts.epochs == 0 || opts.batch_size == 0 || opts.max_train == 0 || opts.max_val == 0 {
            return bad("a count is 0");
        }
        if !opts.lr.is_none_or(|lr| lr.is_finite() && lr > 0.0)
            || opts.time_budget_s.is_nan()
            || opts.time_budget_s <= 0.0
        {
            return bad("lr and time_budget_s must be positive");
        }
        if !(1..=6).contains(&opts.depth)
            || !(1..=1000).contains(&opts.fanout)
            || !(1..=10_000).contains(&opts.max_rows)
        {
            return bad("depth, fanout or max_rows out of range");
        }
        if !opts.ema.is_none_or(|e| (0.0..=100.0).contains(&e)) {
            return bad("ema out of range");
        }
        if !(1..=crate::train::MAX_MEMBERS).contains(&opts.members) {
            return bad("members out of range");
        }
        opts.model_config()?;
        opts.pretrained()?;
        Ok(opts)
    }

    /// The model architecture the `size` option names.
    pub fn model_config(&self) -> Result<ModelConfig> {
        match self.size.as_str() {
            "tiny" => Ok(ModelConfig::tiny()),
            "small" => Ok(ModelConfig::small()),
            "large" => Ok(ModelConfig::large()),
            other => Err(
                Error::new("22023", format!("unknown model size \"{other}\""))
                    .hint("Use \"small\" or \"large\"."),
            ),
        }
    }

    /// Whether the network starts from the pretrained weights (`init`); those have the
    /// `small` architecture, so another size is an error.
    pub fn pretrained(&self) -> Result<bool> {
        match (self.init, self.size.as_str()) {
            (Init::Scratch, _) => Ok(false),
            (Init::Pretrained, "small") => Ok(true),
            (Init::Pretrained, size) => Err(Error::new(
                "22023",
                format!("init \"pretrained\" does not fit model size \"{size}\""),
            )
            .hint("The pretrained weights are of size \"small\": leave size out, or use init \"scratch\".")),
        }
    }

    pub fn sampler(&self) -> SamplerConfig {
        SamplerConfig {
            depth: self.depth,
            fanout: self.fanout,
            max_rows: self.max_rows,
            counts: self.counts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_bounds_and_errors() {
        assert_eq!(
            TrainOptions::from_json(None).unwrap(),
            TrainOptions::default()
        );
        let o = TrainOptions::from_json(Some(json!({"epochs": 3, "max_rows": 40}))).unwrap();
        assert_eq!((o.epochs, o.max_rows, o.fanout), (3, 40, 12));
        assert!(!o.pretrained().unwrap());
        let o = TrainOptions::from_json(Some(json!({"init": "pretrained"}))).unwrap();
        assert!(o.pretrained().unwrap());
        for bad in [
            json!([]),
            json!({"epoch": 3}),
            json!({"epochs": 0}),
            json!({"lr": -1}),
            json!({"time_budget_s": 0}),
            json!({"depth": 7}),
            json!({"ema": -1}),
            json!({"ema": 101}),
            json!({"members": 0}),
            json!({"members": 17}),
            json!({"fanout": 100000}),
            json!({"max_rows": 1000000000}),
            json!({"size": "huge"}),
            json!({"init": "warm"}),
            json!({"init": "pretrained", "size": "tiny"}),
        ] {
            assert_eq!(
                TrainOptions::from_json(Some(bad)).unwrap_err().sqlstate,
                "22023"
            );
        }
    }
}
