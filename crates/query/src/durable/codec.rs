//! How the durable copy writes tuples and result batches: JSON of the pipeline's own types
//! (`Value`, `Change`), so a stored value reads back as exactly the value it was.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use surefoot_core_model::{Batch, Change, Operation, Position, Row, Value};

use super::DurableError;
use crate::datum::{Datum, Tuple};

/// A tuple as stored: its values in the table's kept-column order.
pub(crate) fn encode_tuple(tuple: &Tuple) -> Result<Vec<u8>, DurableError> {
    let values: Vec<Value> = tuple.iter().map(Datum::to_value).collect();
    for (place, value) in values.iter().enumerate() {
        refuse_unstorable(&format!("#{}", place + 1), value)?;
    }
    serde_json::to_vec(&values).map_err(DurableError::Codec)
}

/// A stored tuple read back.
pub(crate) fn decode_tuple(bytes: &[u8]) -> Result<Tuple, DurableError> {
    let values: Vec<Value> = serde_json::from_slice(bytes).map_err(DurableError::Codec)?;
    values
        .iter()
        .map(|value| {
            Datum::from_value(value).ok_or_else(|| {
                DurableError::Corrupt("a stored row holds an unchanged marker".into())
            })
        })
        .collect()
}

/// A result batch in the output log, without its token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredBatch {
    pub(crate) first: Position,
    pub(crate) last: Position,
    pub(crate) commit_time: Option<DateTime<Utc>>,
    pub(crate) changes: Vec<Change>,
}

impl StoredBatch {
    pub(crate) fn of(batch: &Batch) -> Self {
        Self {
            first: batch.first,
            last: batch.last,
            commit_time: batch.commit_time,
            changes: batch.changes.to_vec(),
        }
    }

    /// The first sequence number: the batch's key in the log.
    pub(crate) fn sequence(&self) -> Result<u64, DurableError> {
        match self.first {
            Position::Sequence(sequence) => Ok(sequence),
            other => Err(DurableError::Corrupt(format!(
                "a result batch starts at {other}, not at a sequence"
            ))),
        }
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, DurableError> {
        for change in &self.changes {
            for row in rows_of(change) {
                for column in row.columns() {
                    refuse_unstorable(&column.name, &column.value)?;
                }
            }
        }
        serde_json::to_vec(self).map_err(DurableError::Codec)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, DurableError> {
        serde_json::from_slice(bytes).map_err(DurableError::Codec)
    }

    pub(crate) fn changes(&self) -> Arc<[Change]> {
        self.changes.clone().into()
    }
}

/// JSON has no NaN or infinity (serde_json would write `null`), so such a float would read
/// back as another value: refuse it before anything is written.
fn refuse_unstorable(column: &str, value: &Value) -> Result<(), DurableError> {
    let finite = match value {
        Value::Float32(float) => float.is_finite(),
        Value::Float64(float) => float.is_finite(),
        _ => true,
    };
    if finite {
        return Ok(());
    }
    Err(DurableError::NotStorable {
        column: column.to_owned(),
        value: format!("{value:?}"),
    })
}

/// Every row a change carries.
fn rows_of(change: &Change) -> impl Iterator<Item = &Row> {
    let (first, second, third) = match &change.operation {
        Operation::Insert { after } => (Some(after), None, None),
        Operation::Update { key, before, after } => (key.as_ref(), before.as_ref(), Some(after)),
        Operation::Delete { key, before } => (key.as_ref(), before.as_ref(), None),
        Operation::Truncate => (None, None, None),
    };
    first.into_iter().chain(second).chain(third)
}

#[cfg(test)]
mod tests {
    use super::*;
    use surefoot_core_model::TableRef;

    #[test]
    fn a_nan_or_infinity_is_refused_not_stored_as_null() {
        let tuple: Tuple =
            smallvec::smallvec![Datum::from_value(&Value::Float64(f64::NAN)).unwrap()];
        assert!(matches!(
            encode_tuple(&tuple),
            Err(DurableError::NotStorable { .. })
        ));
        let row = Row::new().with("ratio", Value::Float32(f32::INFINITY));
        let batch = StoredBatch {
            first: Position::Sequence(1),
            last: Position::Sequence(1),
            commit_time: None,
            changes: vec![Change::insert(
                Position::Sequence(1),
                TableRef::new("query", "q"),
                row,
            )],
        };
        let error = batch.encode().unwrap_err();
        assert!(error.to_string().contains("`ratio`"), "{error}");
    }

    #[test]
    fn finite_values_round_trip() {
        let values = [
            Value::Float64(1.5),
            Value::Int64(7),
            Value::Text("a".into()),
        ];
        let tuple: Tuple = values
            .iter()
            .map(|value| Datum::from_value(value).unwrap())
            .collect();
        let decoded = decode_tuple(&encode_tuple(&tuple).unwrap()).unwrap();
        assert_eq!(decoded, tuple);
    }
}
