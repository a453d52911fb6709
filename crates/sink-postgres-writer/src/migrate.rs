//! The embedded, versioned migrations (FINDINGS W-12).
//!
//! They live in `migrations/` of this crate and are compiled in; the bookkeeping table is
//! `surefoot_writer._migrations`, so the writer's history never mixes with another component's
//! sqlx migrations in the same database. Upgrade path: a new release adds a file
//! `NNNN_<what>.sql` (never edits an applied one: sqlx refuses a changed checksum); the writer
//! applies the missing ones at start when `run_migrations` is set, each in its own transaction,
//! under sqlx's advisory lock so two writers starting together do not race. With
//! `run_migrations` off, an operator applies them first (e.g. `sqlx migrate run` with the same
//! table name).

use sqlx::PgPool;
use sqlx::migrate::Migrator;

use crate::error::WriterError;

/// The writer's migrator, with its own bookkeeping table.
pub fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.dangerous_set_table_name("surefoot_writer._migrations");
    migrator.create_schema("surefoot_writer");
    migrator
}

/// Applies every migration not yet applied.
pub(crate) async fn run(pool: &PgPool) -> Result<(), WriterError> {
    migrator().run(pool).await.map_err(WriterError::Migrate)
}
