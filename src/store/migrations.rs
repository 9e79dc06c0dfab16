//! Versioned schema. `MIGRATIONS[i]` upgrades a store from version `i` to `i + 1`; a fresh store
//! is version 0. A store newer than this binary is refused, never rewritten.

use super::{Batch, Result, Store, StoreError, Tree};

/// The schema this binary writes.
pub const SCHEMA_VERSION: u32 = 1;

const VERSION_KEY: &[u8] = b"schema_version";

type Migration = fn(&Store) -> std::result::Result<(), String>;

/// Version 1 is the first layout; it has nothing to move.
const MIGRATIONS: &[Migration] = &[|_store| Ok(())];

pub(super) fn run(store: &Store) -> Result<()> {
    let found: u32 = store.get(Tree::Meta, VERSION_KEY)?.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: store.path().to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (from, migrate) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let to = from as u32 + 1;
        migrate(store).map_err(|detail| StoreError::Migration { to, detail })?;
        let mut batch = Batch::new();
        batch.put(Tree::Meta, VERSION_KEY, &to)?;
        store.apply(batch)?;
        store.flush_blocking()?;
        tracing::info!(schema = to, "Store migrated.");
    }
    Ok(())
}

/// The schema version recorded in `store`.
pub fn version(store: &Store) -> Result<u32> {
    Ok(store.get(Tree::Meta, VERSION_KEY)?.unwrap_or(0))
}
