//! The one wasmtime `Engine` and `Linker` of a host: configured and linked once, at start-up.
//!
//! Engine settings, and why:
//! - the pooling allocator, so an instantiation reuses a pre-reserved slot instead of
//!   mapping memory; a little memory and table stays resident per slot, because on these
//!   machines the `madvise` resets and TLB flushes of a full decommit cost more than the
//!   request itself;
//! - epoch interruption with a ticker thread, for per-request CPU deadlines that also
//!   yield to the runtime, so a spinning guest never starves requests sharing its thread;
//! - wasmtime's compilation cache in the data folder, so a restart does not recompile.
//!
//! The linker holds all of WASI 0.2 (Rust's std imports cli, filesystem and sockets even in
//! components that never use them; each grant is empty per instance), wasi:http (through
//! `calls`, whose hooks decide where requests go), and silo's own interfaces, each capability
//! linking its own. A component importing anything else fails to load with wasmtime's error
//! naming the import.

use std::path::Path;
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::error::Context;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::state::RequestState;
use crate::manifest::MAX_MEMORY_MB;

/// How often the epoch advances: the granularity of CPU deadlines and of yields.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Per component: core instances, memories and tables a component may have. Measured
/// (module instantiations, defined memories, tables): the Rust services 3, 1, 1; the Python
/// `recommendations` (componentize-py 0.25.1) 14, 1, 1 — its `--stub-wasi` build has 49,
/// which is why it is built without; the JavaScript `notifications` (componentize-js 0.23) 4, 1, 1.
const MAX_CORE_INSTANCES: u32 = 16;
const MAX_MEMORIES: u32 = 2;
const MAX_TABLES: u32 = 4;

/// Builds the engine with a pool of `instances` component instances (all services
/// together; the host admits at most each service's `concurrency` of them, and the manifest
/// is refused when those do not fit). `cache_dir`, when given, holds compiled code between
/// runs.
pub fn build_engine(cache_dir: Option<&Path>, instances: u32) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    config.max_wasm_stack(1 << 20);
    config.async_stack_size(2 << 20);

    let mut pool = PoolingAllocationConfig::new();
    // Component instances are the one count that binds: every other pool holds as many as
    // `instances` components could use at their per-component maximum, so a service whose
    // component has many core instances or memories cannot run another out of slots.
    pool.total_component_instances(instances);
    pool.total_core_instances(instances * MAX_CORE_INSTANCES);
    pool.total_memories(instances * MAX_MEMORIES);
    pool.total_tables(instances * MAX_TABLES);
    pool.total_stacks(instances);
    pool.max_memories_per_component(MAX_MEMORIES);
    pool.max_tables_per_component(MAX_TABLES);
    pool.max_core_instances_per_component(MAX_CORE_INSTANCES);
    pool.max_memory_size((MAX_MEMORY_MB << 20) as usize);
    pool.linear_memory_keep_resident(4 << 20);
    pool.table_keep_resident(64 << 10);
    pool.max_unused_warm_slots(64);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));

    if let Some(dir) = cache_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the code cache {}", dir.display()))?;
        let mut cache_config = wasmtime::CacheConfig::new();
        cache_config.with_directory(dir);
        let cache = wasmtime::Cache::new(cache_config).context("opening the code cache")?;
        config.cache(Some(cache));
    }
    Engine::new(&config).context("configuring wasmtime")
}

/// Links every interface a service may import. Done once; shared by every service.
pub fn build_linker(engine: &Engine) -> wasmtime::Result<Linker<RequestState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    crate::calls::add_to_linker(&mut linker)?;
    crate::sql::add_to_linker(&mut linker)?;
    crate::kv::add_to_linker(&mut linker)?;
    crate::events::add_to_linker(&mut linker)?;
    crate::sagas::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a thread of its own, for as long as
/// the engine lives.
pub fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("silo-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}
