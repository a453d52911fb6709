//! The transaction assembler: decoded messages of one stream in, whole transactions of
//! [`Change`]s out.
//!
//! Every change of a transaction gets the position (commit LSN, ordinal), ordinals counting
//! 0, 1, 2, … over the whole transaction, so rows that share a commit LSN stay distinct. A
//! Truncate of N tables is N changes. Nothing leaves the assembler before its Commit unless
//! the caller takes it out ([`TransactionAssembler::take_changes`], to bound a large
//! transaction's memory); ordinals go on counting across what was taken.

use chrono::{DateTime, Utc};
use surefoot_core_model::{Change, Lsn, Position, Row};

use super::assembly_error::AssemblyError;
use super::decode_error::MessageKind;
use super::messages::{
    Begin, Commit, Delete, Insert, LogicalMessage, Message, Oid, OldTuple, Origin, Truncate, Update,
};
use super::relations::{CachedRelation, RelationCache};
use super::rows::RowError;
use super::tuple::TupleData;

/// A committed transaction, ready to become one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedTransaction {
    /// The transaction id.
    pub xid: u32,
    /// The LSN of the commit record: the first half of every change's position.
    pub commit_lsn: Lsn,
    /// The LSN just past the commit record: what to confirm once the batch is delivered.
    pub end_lsn: Lsn,
    /// When the transaction committed.
    pub commit_time: DateTime<Utc>,
    /// Origin messages of the transaction (replicated from elsewhere), in order.
    pub origins: Vec<Origin>,
    /// The changes, in order, with ordinals 0, 1, 2, … (continuing after those taken out
    /// before the Commit).
    pub changes: Vec<Change>,
    /// Transactional logical decoding messages of the transaction, in order.
    pub messages: Vec<LogicalMessage>,
}

/// What the assembler hands out.
#[derive(Debug, Clone, PartialEq)]
pub enum Assembled {
    /// A transaction, complete at its Commit.
    Transaction(CompletedTransaction),
    /// A non-transactional logical decoding message (e.g. the source's heartbeat).
    Message(LogicalMessage),
}

/// The transaction being assembled.
#[derive(Debug)]
struct OpenTransaction {
    begin: Begin,
    origins: Vec<Origin>,
    /// Changes already taken out of the transaction.
    taken: u32,
    changes: Vec<Change>,
    messages: Vec<LogicalMessage>,
}

/// Turns one connection's decoded messages into transactions. Owns the relation cache.
#[derive(Debug, Default)]
pub struct TransactionAssembler {
    relations: RelationCache,
    open: Option<OpenTransaction>,
}

impl TransactionAssembler {
    /// An assembler with an empty relation cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets relations, types and any unfinished transaction: call on every reconnect.
    pub fn reset(&mut self) {
        self.relations.clear();
        self.open = None;
    }

    /// The relations and types learnt so far.
    pub fn relations(&self) -> &RelationCache {
        &self.relations
    }

    /// Whether a Begin has arrived without its Commit.
    pub fn in_transaction(&self) -> bool {
        self.open.is_some()
    }

    /// The changes of the open transaction still held (none without one).
    pub fn open_changes(&self) -> &[Change] {
        self.open.as_ref().map_or(&[], |open| &open.changes)
    }

    /// Drops the held changes from index `from` on, as if the messages that made them had not
    /// come yet: their ordinals are given again. For a caller that keeps those messages
    /// elsewhere and feeds them again later.
    pub fn discard_changes_from(&mut self, from: usize) {
        if let Some(open) = &mut self.open {
            open.changes.truncate(from);
        }
    }

    /// Takes the first `count` held changes out of the open transaction (all of them when
    /// `count` is larger); the transaction stays open and later changes continue the ordinals.
    pub fn take_changes(&mut self, count: usize) -> Vec<Change> {
        let Some(open) = &mut self.open else {
            return Vec::new();
        };
        let count = count.min(open.changes.len());
        let rest = open.changes.split_off(count);
        let taken = std::mem::replace(&mut open.changes, rest);
        open.taken = open
            .taken
            .saturating_add(u32::try_from(count).unwrap_or(u32::MAX));
        taken
    }

    /// Takes the next message. Returns a transaction at its Commit, a non-transactional
    /// logical message at once, and nothing for every other message.
    pub fn feed(&mut self, message: Message) -> Result<Option<Assembled>, AssemblyError> {
        match message {
            Message::Begin(begin) => self.begin(begin).map(|()| None),
            Message::Commit(commit) => self.commit(commit).map(Some),
            Message::Relation(relation) => {
                self.relations.learn_relation(relation);
                Ok(None)
            }
            Message::Type(info) => {
                self.relations.learn_type(&info);
                Ok(None)
            }
            Message::Origin(origin) => {
                self.open_mut(MessageKind::Origin)?.origins.push(origin);
                Ok(None)
            }
            Message::Message(message) => self.logical_message(message),
            Message::Insert(insert) => self.insert(insert).map(|()| None),
            Message::Update(update) => self.update(update).map(|()| None),
            Message::Delete(delete) => self.delete(delete).map(|()| None),
            Message::Truncate(truncate) => self.truncate(truncate).map(|()| None),
        }
    }

    /// Fails unless a transaction is open: changes belong inside one.
    fn ensure_open(&self, kind: MessageKind) -> Result<(), AssemblyError> {
        match self.open {
            Some(_) => Ok(()),
            None => Err(AssemblyError::OutsideTransaction { message: kind }),
        }
    }

    fn begin(&mut self, begin: Begin) -> Result<(), AssemblyError> {
        if let Some(open) = &self.open {
            return Err(AssemblyError::NestedBegin {
                open_final_lsn: open.begin.final_lsn,
                new_final_lsn: begin.final_lsn,
            });
        }
        self.open = Some(OpenTransaction {
            begin,
            origins: Vec::new(),
            taken: 0,
            changes: Vec::new(),
            messages: Vec::new(),
        });
        Ok(())
    }

    fn commit(&mut self, commit: Commit) -> Result<Assembled, AssemblyError> {
        let open = self.open.take().ok_or(AssemblyError::OutsideTransaction {
            message: MessageKind::Commit,
        })?;
        if open.begin.final_lsn != commit.commit_lsn {
            return Err(AssemblyError::CommitLsnMismatch {
                begin_final_lsn: open.begin.final_lsn,
                commit_lsn: commit.commit_lsn,
            });
        }
        Ok(Assembled::Transaction(CompletedTransaction {
            xid: open.begin.xid,
            commit_lsn: commit.commit_lsn,
            end_lsn: commit.end_lsn,
            commit_time: commit.commit_time,
            origins: open.origins,
            changes: open.changes,
            messages: open.messages,
        }))
    }

    fn logical_message(
        &mut self,
        message: LogicalMessage,
    ) -> Result<Option<Assembled>, AssemblyError> {
        if !message.is_transactional() {
            return Ok(Some(Assembled::Message(message)));
        }
        self.open_mut(MessageKind::Message)?.messages.push(message);
        Ok(None)
    }

    fn insert(&mut self, insert: Insert) -> Result<(), AssemblyError> {
        let kind = MessageKind::Insert;
        self.ensure_open(kind)?;
        let relation = self.relation(kind, insert.relation_id)?;
        let after = self.full_row(kind, relation, &insert.new)?;
        let table = relation.table.clone();
        self.push(kind, |position| Change::insert(position, table, after))
    }

    fn update(&mut self, update: Update) -> Result<(), AssemblyError> {
        let kind = MessageKind::Update;
        self.ensure_open(kind)?;
        let relation = self.relation(kind, update.relation_id)?;
        let (key, before) = match &update.old {
            Some(old) => self.old_rows(kind, relation, old)?,
            None => (None, None),
        };
        let after = self.full_row(kind, relation, &update.new)?;
        let table = relation.table.clone();
        self.push(kind, |position| {
            Change::update(position, table, key, before, after)
        })
    }

    fn delete(&mut self, delete: Delete) -> Result<(), AssemblyError> {
        let kind = MessageKind::Delete;
        self.ensure_open(kind)?;
        let relation = self.relation(kind, delete.relation_id)?;
        let (key, before) = self.old_rows(kind, relation, &delete.old)?;
        let table = relation.table.clone();
        self.push(kind, |position| {
            Change::delete(position, table, key, before)
        })
    }

    fn truncate(&mut self, truncate: Truncate) -> Result<(), AssemblyError> {
        let kind = MessageKind::Truncate;
        self.ensure_open(kind)?;
        let tables = truncate
            .relation_ids
            .iter()
            .map(|&id| Ok(self.relation(kind, id)?.table.clone()))
            .collect::<Result<Vec<_>, AssemblyError>>()?;
        for table in tables {
            self.push(kind, |position| Change::truncate(position, table))?;
        }
        Ok(())
    }

    /// `(key, before)` of an old tuple: `K` gives the key columns, `O` the whole old row.
    fn old_rows(
        &self,
        kind: MessageKind,
        relation: &CachedRelation,
        old: &OldTuple,
    ) -> Result<(Option<Row>, Option<Row>), AssemblyError> {
        let types = self.relations.types();
        let row_error = |source: RowError| AssemblyError::Row {
            message: kind,
            source,
        };
        match old {
            OldTuple::Key(tuple) => Ok((
                Some(relation.key_row(tuple, types).map_err(row_error)?),
                None,
            )),
            OldTuple::Full(tuple) => {
                Ok((None, Some(relation.row(tuple, types).map_err(row_error)?)))
            }
        }
    }

    fn full_row(
        &self,
        kind: MessageKind,
        relation: &CachedRelation,
        tuple: &TupleData,
    ) -> Result<Row, AssemblyError> {
        relation
            .row(tuple, self.relations.types())
            .map_err(|source| AssemblyError::Row {
                message: kind,
                source,
            })
    }

    fn relation(&self, kind: MessageKind, id: Oid) -> Result<&CachedRelation, AssemblyError> {
        self.relations
            .get(id)
            .map_err(|source| AssemblyError::UnknownRelation {
                message: kind,
                source,
            })
    }

    fn open_mut(&mut self, kind: MessageKind) -> Result<&mut OpenTransaction, AssemblyError> {
        self.open
            .as_mut()
            .ok_or(AssemblyError::OutsideTransaction { message: kind })
    }

    /// Appends the change `make` builds at the transaction's next position.
    fn push(
        &mut self,
        kind: MessageKind,
        make: impl FnOnce(Position) -> Change,
    ) -> Result<(), AssemblyError> {
        let open = self.open_mut(kind)?;
        let final_lsn = open.begin.final_lsn;
        let ordinal = u32::try_from(open.changes.len())
            .ok()
            .and_then(|held| held.checked_add(open.taken))
            .ok_or(AssemblyError::TooManyChanges { final_lsn })?;
        open.changes
            .push(make(Position::postgres(final_lsn, ordinal)));
        Ok(())
    }
}
