//! (De)serialisation of models: safetensors bytes with the configuration, encoder,
//! normalisation, calibration and history as JSON fields of the metadata.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use super::predict::fast_model;
use super::{Head, TrainError, TrainedModel};
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
    let mut meta: HashMap<String, String> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    meta.insert(META_FORMAT.to_string(), format.to_string());
    let tensors: Vec<(String, Tensor)> = sorted_vars(varmap)
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
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

/// Sets every variable of `varmap` from stored bytes, each checked to have its shape.
pub(crate) fn load_vars(varmap: &VarMap, bytes: &[u8], dev: &Device) -> Result<(), TrainError> {
    let loaded = candle_core::safetensors::load_buffer(bytes, dev)?;
    for (name, var) in sorted_vars(varmap) {
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

impl TrainedModel {
    /// Safetensors bytes: the weights, with the task, configs, encoder, normalisation,
    /// calibration and history as JSON strings in the metadata.
    pub fn to_bytes(&self) -> Result<Vec<u8>, TrainError> {
        let j = |v: &dyn erased::Json| v.json();
        store_bytes(
            &self.varmap,
            FORMAT_VERSION,
            &[
                ("task", j(&self.head)?),
                ("model_config", j(&self.model_cfg)?),
                ("dims", j(&self.dims)?),
                ("encoder", j(&self.encoder)?),
                ("target_norm", j(&self.target_norm)?),
                ("calibration", j(&self.calibration)?),
                ("history", j(&self.history)?),
            ],
        )
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
        model_cfg.check_stored_size(&dims, bytes.len())?;
        let varmap = VarMap::new();
        let model = Model::new(&model_cfg, &dims, &varmap, &dev)?;
        load_vars(&varmap, bytes, &dev)?;
        Ok(TrainedModel {
            head,
            model_cfg,
            dims,
            encoder: meta_field(&meta, "encoder")?,
            target_norm: meta_field(&meta, "target_norm")?,
            calibration: meta_field(&meta, "calibration")?,
            history: meta_field(&meta, "history")?,
            predict_batch_tokens: 8192,
            fast: fast_model(&model, &dev)?,
            varmap,
            model,
            device: dev,
        })
    }
}
