//! The redb database behind a durable query: the input rows it keeps, its progress and the
//! result batches not yet acknowledged, changed together in one transaction per input batch.

use std::collections::HashMap;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use surefoot_core_model::{Position, SourceId};

use super::DurableError;
use super::codec::{StoredBatch, decode_tuple, encode_tuple};
use crate::datum::Tuple;
use crate::engine::Touched;

/// Input rows: (input table index, encoded key) → encoded kept row.
const ROWS: TableDefinition<'static, (u32, &'static [u8]), &'static [u8]> =
    TableDefinition::new("rows");
/// Result batches not yet acknowledged: first sequence → encoded batch.
const OUTBOX: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("outbox");
/// The query's identity and progress, JSON.
const META: TableDefinition<'static, &'static str, &'static [u8]> = TableDefinition::new("meta");

const IDENTITY: &str = "identity";
const PROGRESS: &str = "progress";

/// What the state was made for: a store opened for another query is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Identity {
    pub(crate) id: String,
    pub(crate) sql: String,
    /// Each input table's kept columns, in plan order.
    pub(crate) kept: Vec<Vec<String>>,
}

/// Where the state stands.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Progress {
    pub(crate) next_sequence: u64,
    /// The last position applied per source.
    pub(crate) inputs: Vec<(String, Position)>,
}

/// What a store held when opened.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// Per input table, its kept rows.
    pub(crate) rows: Vec<Vec<Tuple>>,
    pub(crate) progress: Progress,
    /// The unacknowledged result batches, in sequence order.
    pub(crate) outbox: Vec<StoredBatch>,
}

/// One input batch's effect, committed at once.
pub(crate) struct Commit<'a> {
    pub(crate) touched: &'a [Touched],
    pub(crate) progress: Progress,
    pub(crate) outputs: &'a [StoredBatch],
    /// First sequences of result batches acknowledged since the last commit.
    pub(crate) acknowledged: &'a [u64],
}

/// The database.
#[derive(Debug)]
pub(crate) struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the store at `path` for `identity` and reads what it holds.
    pub(crate) fn open(path: &Path, identity: &Identity) -> Result<(Self, Loaded), DurableError> {
        let db = Database::create(path).map_err(redb::Error::from)?;
        let store = Self { db };
        let stored = store.identity()?;
        match stored {
            Some(stored) if stored != *identity => {
                return Err(DurableError::Changed {
                    stored: Box::new(stored.sql),
                    given: Box::new(identity.sql.clone()),
                });
            }
            Some(_) => {}
            None => store.create(identity)?,
        }
        let loaded = store.load(identity.kept.len())?;
        Ok((store, loaded))
    }

    fn identity(&self) -> Result<Option<Identity>, DurableError> {
        let read = self.db.begin_read().map_err(redb::Error::from)?;
        let meta = match read.open_table(META) {
            Ok(meta) => meta,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(redb::Error::from(error).into()),
        };
        let Some(bytes) = meta.get(IDENTITY).map_err(redb::Error::from)? else {
            return Ok(None);
        };
        serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(DurableError::Codec)
    }

    fn create(&self, identity: &Identity) -> Result<(), DurableError> {
        let write = self.db.begin_write().map_err(redb::Error::from)?;
        {
            let mut meta = write.open_table(META).map_err(redb::Error::from)?;
            let bytes = serde_json::to_vec(identity).map_err(DurableError::Codec)?;
            meta.insert(IDENTITY, bytes.as_slice())
                .map_err(redb::Error::from)?;
            let progress = Progress {
                next_sequence: 1,
                inputs: Vec::new(),
            };
            let bytes = serde_json::to_vec(&progress).map_err(DurableError::Codec)?;
            meta.insert(PROGRESS, bytes.as_slice())
                .map_err(redb::Error::from)?;
            write.open_table(ROWS).map_err(redb::Error::from)?;
            write.open_table(OUTBOX).map_err(redb::Error::from)?;
        }
        write.commit().map_err(redb::Error::from)?;
        Ok(())
    }

    fn load(&self, tables: usize) -> Result<Loaded, DurableError> {
        let read = self.db.begin_read().map_err(redb::Error::from)?;
        let meta = read.open_table(META).map_err(redb::Error::from)?;
        let progress = match meta.get(PROGRESS).map_err(redb::Error::from)? {
            Some(bytes) => serde_json::from_slice(bytes.value()).map_err(DurableError::Codec)?,
            None => return Err(DurableError::Corrupt("no progress record".into())),
        };
        let mut rows = vec![Vec::new(); tables];
        for entry in read
            .open_table(ROWS)
            .map_err(redb::Error::from)?
            .iter()
            .map_err(redb::Error::from)?
        {
            let (key, value) = entry.map_err(redb::Error::from)?;
            let (index, _) = key.value();
            let Some(table) = usize::try_from(index).ok().and_then(|i| rows.get_mut(i)) else {
                return Err(DurableError::Corrupt(format!(
                    "rows of input table {index}"
                )));
            };
            table.push(decode_tuple(value.value())?);
        }
        let mut outbox = Vec::new();
        for entry in read
            .open_table(OUTBOX)
            .map_err(redb::Error::from)?
            .iter()
            .map_err(redb::Error::from)?
        {
            let (_, value) = entry.map_err(redb::Error::from)?;
            outbox.push(StoredBatch::decode(value.value())?);
        }
        Ok(Loaded {
            rows,
            progress,
            outbox,
        })
    }

    /// Writes the effect of one or more input batches in one transaction, durable when this
    /// returns.
    pub(crate) fn commit(&self, commit: &Commit<'_>) -> Result<(), DurableError> {
        let write = self.db.begin_write().map_err(redb::Error::from)?;
        {
            let mut rows = write.open_table(ROWS).map_err(redb::Error::from)?;
            for (index, touched) in commit.touched.iter().enumerate() {
                let index = u32::try_from(index)
                    .map_err(|_| DurableError::Corrupt("more than 2^32 input tables".into()))?;
                if touched.truncated {
                    truncate_all(&mut rows, index)?;
                }
                for (key, row) in &touched.rows {
                    let key = encode_tuple(key)?;
                    match row {
                        Some(row) => {
                            let row = encode_tuple(row)?;
                            rows.insert((index, key.as_slice()), row.as_slice())
                                .map_err(redb::Error::from)?;
                        }
                        None => {
                            rows.remove((index, key.as_slice()))
                                .map_err(redb::Error::from)?;
                        }
                    }
                }
            }
            let mut outbox = write.open_table(OUTBOX).map_err(redb::Error::from)?;
            for sequence in commit.acknowledged {
                outbox.remove(sequence).map_err(redb::Error::from)?;
            }
            for output in commit.outputs {
                let bytes = output.encode()?;
                outbox
                    .insert(output.sequence()?, bytes.as_slice())
                    .map_err(redb::Error::from)?;
            }
            let mut meta = write.open_table(META).map_err(redb::Error::from)?;
            let bytes = serde_json::to_vec(&commit.progress).map_err(DurableError::Codec)?;
            meta.insert(PROGRESS, bytes.as_slice())
                .map_err(redb::Error::from)?;
        }
        write.commit().map_err(redb::Error::from)?;
        Ok(())
    }
}

/// Removes every row of input table `index` (a TRUNCATE).
fn truncate_all(
    rows: &mut redb::Table<'_, (u32, &'static [u8]), &'static [u8]>,
    index: u32,
) -> Result<(), DurableError> {
    rows.retain(|(table, _), _| table != index)
        .map_err(redb::Error::from)?;
    Ok(())
}

impl Progress {
    pub(crate) fn inputs(&self) -> HashMap<SourceId, Position> {
        self.inputs
            .iter()
            .map(|(source, position)| (SourceId::new(source.clone()), *position))
            .collect()
    }
}
