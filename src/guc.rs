//! rdl's settings (GUCs), defined when the library loads.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// `rdl.threads`: compute threads for training and batch scoring; 0 = one per core.
pub static THREADS: GucSetting<i32> = GucSetting::<i32>::new(0);

pub fn init() {
    GucRegistry::define_int_guc(
        c"rdl.threads",
        c"Threads rdl's model computations use (0: one per CPU core).",
        c"Training and large batches of predictions use this many threads; predictions of a few entities use one, which is faster for them.",
        &THREADS,
        0,
        1024,
        GucContext::Userset,
        GucFlags::default(),
    );
}

/// Hands the settings to the engine; called at the start of every computation.
pub fn apply() {
    rdl_engine::threads::configure(THREADS.get().max(0) as usize);
}
