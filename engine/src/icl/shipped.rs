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

/// Sets the relational transformer registered in `varmap` (a [`crate::model::Model`] of
/// [`IclConfig::default`]'s architecture with [`super::READER_COLUMNS`] columns and its bucket
/// count) to the shipped model's reader: every parameter but the output head, which stays
/// as initialised (the reader's own was never trained: in-context answers come from
/// `icl.head`). Fails when a parameter is missing or of another shape.
pub fn start_reader(varmap: &VarMap) -> Result<()> {
    set_vars(varmap, |name| {
        !name.starts_with("icl.") && !name.starts_with("head.")
    })
}

/// Sets every variable of `varmap` whose name `take` accepts to the shipped tensor of that
/// name, on the variable's device; fails unless the shipped tensors `take` accepts and the
/// variables it accepts are the same names with the same shapes (a reader of another
/// architecture must not start from a part of the weights without saying so).
fn set_vars(varmap: &VarMap, take: impl Fn(&str) -> bool) -> Result<()> {
    let tensors = candle_core::safetensors::load_buffer(WEIGHTS, &Device::Cpu)?;
    let data = varmap.data().lock().expect("varmap lock");
    let (theirs, ours) = (
        tensors.keys().filter(|n| take(n)).count(),
        data.keys().filter(|n| take(n)).count(),
    );
    if theirs != ours {
        candle_core::bail!("the shipped weights hold {theirs} such tensors, the model {ours}");
    }
    for (name, var) in data.iter().filter(|(n, _)| take(n)) {
        let Some(t) = tensors.get(name) else {
            candle_core::bail!("the shipped weights lack {name}");
        };
        if t.dims() != var.dims() {
            candle_core::bail!(
                "the shipped {name} is {:?}, the model's {:?}",
                t.dims(),
                var.dims()
            );
        }
        var.set(&t.to_device(var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// The shipped tensors by name (tests).
#[cfg(test)]
pub(crate) fn tensors() -> std::collections::HashMap<String, candle_core::Tensor> {
    candle_core::safetensors::load_buffer(WEIGHTS, &Device::Cpu).expect("shipped weights")
}

/// The shipped model, on the CPU. Fails when the weights do not fit
/// [`IclConfig::default`] (a configuration changed without new weights: a test catches it).
pub fn load() -> Result<IclModel> {
    let varmap = VarMap::new();
    let model = IclModel::new(&IclConfig::default(), &varmap, &Device::Cpu)?;
    set_vars(&varmap, |_| true)?;
    Ok(model)
}
