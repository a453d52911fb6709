//! The relation cache: what Relation and Type messages said, by id.
//!
//! The server sends a Relation message before the first change to each table on each
//! connection (and again when the table's schema changes), so the cache must be cleared on every
//! reconnect and relearnt from the new stream: an id the new stream has not described is an
//! error, never a guess from the old connection.

use std::collections::HashMap;
use std::sync::Arc;

use surefoot_core_lifecycle::{Classify, ErrorClass};
use surefoot_core_model::TableRef;

use super::messages::{Oid, Relation, ReplicaIdentity, TypeInfo};
use super::type_names::TypeNames;

/// One column of a cached relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedColumn {
    /// The column's name, shared by every row built from this relation.
    pub name: Arc<str>,
    /// The OID of the column's type.
    pub type_oid: Oid,
    /// The type modifier, -1 when none.
    pub type_modifier: i32,
    /// Whether the column is part of the replica identity key.
    pub is_key: bool,
}

/// A table as its latest Relation message described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedRelation {
    /// The relation's OID.
    pub id: Oid,
    /// The table (schema `pg_catalog` when the message's namespace was empty).
    pub table: TableRef,
    /// What updates and deletes send of the old row.
    pub replica_identity: ReplicaIdentity,
    /// The published columns, in tuple order.
    pub columns: Vec<CachedColumn>,
}

impl From<Relation> for CachedRelation {
    fn from(relation: Relation) -> Self {
        let schema = if relation.namespace.is_empty() {
            "pg_catalog".to_owned()
        } else {
            relation.namespace
        };
        let columns = relation
            .columns
            .into_iter()
            .map(|column| CachedColumn {
                is_key: column.is_key(),
                name: column.name.into(),
                type_oid: column.type_oid,
                type_modifier: column.type_modifier,
            })
            .collect();
        Self {
            id: relation.id,
            table: TableRef::new(schema, relation.name),
            replica_identity: relation.replica_identity,
            columns,
        }
    }
}

/// A change referred to a relation id no Relation message on this connection described.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("relation {relation_id} was not described by a Relation message on this connection")]
pub struct UnknownRelation {
    /// The unknown relation id.
    pub relation_id: Oid,
}

impl Classify for UnknownRelation {
    /// Permanent: a protocol violation by the server, not a passing condition.
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

/// Relations and type names learnt from one connection's stream.
#[derive(Debug, Clone, Default)]
pub struct RelationCache {
    relations: HashMap<Oid, CachedRelation>,
    types: TypeNames,
}

impl RelationCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a Relation message, replacing what an earlier one said about the same id.
    pub fn learn_relation(&mut self, relation: Relation) {
        self.relations.insert(relation.id, relation.into());
    }

    /// Records a Type message's name for its OID.
    pub fn learn_type(&mut self, info: &TypeInfo) {
        self.types.learn(info);
    }

    /// The relation with id `relation_id`.
    pub fn get(&self, relation_id: Oid) -> Result<&CachedRelation, UnknownRelation> {
        self.relations
            .get(&relation_id)
            .ok_or(UnknownRelation { relation_id })
    }

    /// Type names learnt, with the built-in names behind them.
    pub fn types(&self) -> &TypeNames {
        &self.types
    }

    /// Number of relations known.
    pub fn len(&self) -> usize {
        self.relations.len()
    }

    /// True when no relation is known.
    pub fn is_empty(&self) -> bool {
        self.relations.is_empty()
    }

    /// Forgets every relation and type: call on every reconnect.
    pub fn clear(&mut self) {
        self.relations.clear();
        self.types.clear();
    }
}
