//! The connected writers, for readiness: one lock, never held across an `.await`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use surefoot_sink_postgres_writer::PostgresWriter;

/// Writers by reaction id.
#[derive(Debug, Clone, Default)]
pub struct Writers {
    by_id: Arc<Mutex<BTreeMap<String, PostgresWriter>>>,
}

impl Writers {
    /// Records the writer of reaction `id` (replacing an earlier one).
    pub fn insert(&self, id: &str, writer: PostgresWriter) {
        self.lock().insert(id.to_owned(), writer);
    }

    /// Forgets the writer of reaction `id`.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The writer of reaction `id`, if connected.
    pub fn get(&self, id: &str) -> Option<PostgresWriter> {
        self.lock().get(id).cloned()
    }

    /// Every writer, by id (handles: cloning is cheap).
    pub fn all(&self) -> Vec<(String, PostgresWriter)> {
        self.lock()
            .iter()
            .map(|(id, writer)| (id.clone(), writer.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PostgresWriter>> {
        self.by_id.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
