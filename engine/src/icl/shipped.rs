//! The pretrained weights shipped with rdl: `engine/weights/icl.safetensors`, made by
//! `bench/in_context.sh` from generated databases only (seeds below 1000), with their
//! card `engine/weights/card.json` (configuration, data, steps, loss curve, SHA-256).

use candle_core::{Device, Result};
use candle_nn::VarMap;

use super::model::IclModel;
use super::IclConfig;

static WEIGHTS: &[u8] = include_bytes!("../../weights/icl.safetensors");

/// The weights' card (JSON).
pub const CARD: &str = include_str!("../../weights/card.json");

/// The shipped model, loaded once per process.
pub fn get() -> std::result::Result<&'static IclModel, String> {
    static MODEL: std::sync::OnceLock<std::result::Result<IclModel, String>> =
        std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| load().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

/// The shipped model, on the CPU. Fails when the weights do not fit
/// [`IclConfig::default`] (a configuration changed without new weights: a test catches it).
pub fn load() -> Result<IclModel> {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let model = IclModel::new(&IclConfig::default(), &varmap, &dev)?;
    let tensors = candle_core::safetensors::load_buffer(WEIGHTS, &dev)?;
    let data = varmap.data().lock().expect("varmap lock");
    if tensors.len() != data.len() {
        candle_core::bail!(
            "the shipped weights hold {} tensors, the model {}",
            tensors.len(),
            data.len()
        );
    }
    for (name, var) in data.iter() {
        let Some(t) = tensors.get(name) else {
            candle_core::bail!("the shipped weights lack {name}");
        };
        var.set(t)?;
    }
    drop(data);
    Ok(model)
}
