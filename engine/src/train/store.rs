//! (De)serialisation of models: safetensors bytes with the configuration, encoder,
//! normalisation, calibration and history as JSON fields of the metadata.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use super::predict::fast_model;
use super::{Head, Member, TrainError, TrainedModel};
use crate::model::{sorted_vars, Model, ModelConfig, ModelDims};

pub(crate) const META_FORMAT: &str = "rdl.format";
const FORMAT_VERSION: &str = "1";

/// JSON of stored metadata fields, whatever their type.
pub(crate) mod erased {
    pub trait Json {
        fn json(&self) -> Result<String, super::TrainError>;
    }

    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> Result<String, super::TrainError> {
            serde_json::to_string(self).map_err(|e| super::TrainError::Format(e.to_string()))
        }
    }
}

/// Safetensors bytes of every variable of `varmap`, with `fields` (JSON) and the format
/// version in the metadata.
pub(crate) fn store_bytes(
    varmap: &VarMap,
    format: &str,
    fields: &[(&str, String)],
) -> Result<Vec<u8>, TrainError> {
    store_prefixed(&[("", varmap)], format, fields)
}

/// [`store_bytes`] of several variable maps, each's names behind its prefix.
fn store_prefixed(
    varmaps: &[(&str, &VarMap)],
    format: &str,
    fields: &[(&str, String)],
) -> Result<Vec<u8>, TrainError> {
    let mut meta: HashMap<String, String> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    meta.insert(META_FORMAT.to_string(), format.to_string());
    let tensors: Vec<(String, Tensor)> = varmaps
        .iter()
        .flat_map(|(prefix, vm)| {
            sorted_vars(vm)
                .into_iter()
                .map(move |(n, v)| (format!("{prefix}{n}"), v.as_tensor().clone()))
        })
        .collect();
    safetensors::tensor::serialize(tensors, Some(meta))
        .map_err(|e| TrainError::Format(e.to_string()))
}

/// The metadata of stored model bytes, checked to be of `format` (every model kind writes
/// its own format version under [`META_FORMAT`]).
pub(crate) fn stored_meta(
    bytes: &[u8],
    format: &str,
) -> Result<HashMap<String, String>, TrainError> {
    let bad = |s: String| TrainError::Format(s);
    let (_, md) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let meta = md
        .metadata()
        .clone()
        .ok_or_else(|| bad("no metadata".into()))?;
    if meta.get(META_FORMAT).map(String::as_str) != Some(format) {
        return Err(bad(format!("not an rdl model of format {format}")));
    }
    Ok(meta)
}

/// One JSON field of stored metadata.
pub(crate) fn meta_field<T: serde::de::DeserializeOwned>(
    meta: &HashMap<String, String>,
    k: &str,
) -> Result<T, TrainError> {
    let s = meta
        .get(k)
        .ok_or_else(|| TrainError::Format(format!("missing {k}")))?;
    serde_json::from_str(s).map_err(|e| TrainError::Format(format!("{k}: {e}")))
}

/// An optional JSON field of stored metadata: `default` when absent.
fn meta_field_or<T: serde::de::DeserializeOwned>(
    meta: &HashMap<String, String>,
    k: &str,
    default: T,
) -> Result<T, TrainError> {
    if meta.contains_key(k) {
        meta_field(meta, k)
    } else {
        Ok(default)
    }
}

/// Sets every variable of `varmap` from stored bytes, each checked to have its shape.
pub(crate) fn load_vars(varmap: &VarMap, bytes: &[u8], dev: &Device) -> Result<(), TrainError> {
    let loaded = candle_core::safetensors::load_buffer(bytes, dev)?;
    set_vars(varmap, &loaded, "")
}

/// Sets every variable of `varmap` from the loaded tensor named by `prefix` and its name.
fn set_vars(
    varmap: &VarMap,
    loaded: &HashMap<String, Tensor>,
    prefix: &str,
) -> Result<(), TrainError> {
    for (name, var) in sorted_vars(varmap) {
        let name = format!("{prefix}{name}");
        let t = loaded
            .get(&name)
            .ok_or_else(|| TrainError::Format(format!("missing tensor {name}")))?;
        if t.dims() != var.dims() {
            return Err(TrainError::Format(format!(
                "tensor {name} has shape {:?}",
                t.dims()
            )));
        }
        var.set(t)?;
    }
    Ok(())
}

/// Members a stored model may hold at most.
pub const MAX_MEMBERS: usize = 16;

/// The name prefix of member `i`'s tensors (none for the first).
fn member_prefix(i: usize) -> String {
    if i == 0 {
        String::new()
    } else {
        format!("member{i}.")
    }
}

impl TrainedModel {
    /// Safetensors bytes: the weights, with the task, configs, encoder, normalisation,
    /// calibration and history as JSON strings in the metadata.
    /// An ensemble's members after the first are stored under `member<i>.` with their
    /// count and histories (a single network's bytes are what they were before ensembles).
    pub fn to_bytes(&self) -> Result<Vec<u8>, TrainError> {
        let j = |v: &dyn erased::Json| v.json();
        let mut fields = vec![
            ("task", j(&self.head)?),
            ("model_config", j(&self.model_cfg)?),
            ("dims", j(&self.dims)?),
            ("encoder", j(&self.encoder)?),
            ("target_norm", j(&self.target_norm)?),
            ("calibration", j(&self.calibration)?),
            ("history", j(&self.history)?),
        ];
        if self.members.len() > 1 {
            fields.push(("members", j(&self.members.len())?));
            fields.push(("member_history", j(&self.member_history)?));
        }
        let prefixes: Vec<String> = (0..self.members.len()).map(member_prefix).collect();
        let maps: Vec<(&str, &VarMap)> = prefixes
            .iter()
            .zip(&self.members)
            .map(|(p, m)| (p.as_str(), &m.varmap))
            .collect();
        store_prefixed(&maps, FORMAT_VERSION, &fields)
    }

    /// A model from [`TrainedModel::to_bytes`], on the CPU.
    pub fn from_bytes(bytes: &[u8]) -> Result<TrainedModel, TrainError> {
        Self::from_bytes_on(bytes, &Device::Cpu)
    }

    /// A model from [`TrainedModel::to_bytes`], its weights on `dev`.
    pub fn from_bytes_on(bytes: &[u8], dev: &Device) -> Result<TrainedModel, TrainError> {
        let meta = stored_meta(bytes, FORMAT_VERSION)?;
        let head: Head = meta_field(&meta, "task")?;
        let model_cfg: ModelConfig = meta_field(&meta, "model_config")?;
        let dims: ModelDims = meta_field(&meta, "dims")?;
        let dev = dev.clone();
        let n: usize = meta_field_or(&meta, "members", 1)?;
        if !(1..=MAX_MEMBERS).contains(&n) {
            return Err(TrainError::Format(format!("{n} members")));
        }
        // Every member's weights are in the bytes: each has at most their n-th part.
        model_cfg.check_stored_size(&dims, bytes.len() / n)?;
        let loaded = candle_core::safetensors::load_buffer(bytes, &dev)?;
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            let varmap = VarMap::new();
            let model = Model::new(&model_cfg, &dims, &varmap, &dev)?;
            set_vars(&varmap, &loaded, &member_prefix(i))?;
            members.push(Member {
                fast: fast_model(&model, &dev)?,
                varmap,
                model,
            });
        }
        let member_history = meta_field_or(&meta, "member_history", Vec::new())?;
        Ok(TrainedModel {
            head,
            model_cfg,
            dims,
            encoder: meta_field(&meta, "encoder")?,
            target_norm: meta_field(&meta, "target_norm")?,
            calibration: meta_field(&meta, "calibration")?,
            history: meta_field(&meta, "history")?,
            predict_batch_tokens: 8192,
            members,
            member_history,
            device: dev,
        })
    }
}
