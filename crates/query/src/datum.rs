//! The query's internal value: a [`Value`] reduced to what evaluation needs, hashable and totally
//! ordered so it can key joins, groups and min/max multisets.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use surefoot_core_model::{Numeric, Value};

mod shared;

pub use shared::SharedStr;

/// One value inside the query.
///
/// Integers of every width are `Int` (so `int4 = int8` joins match); `numeric` keeps its exact
/// text and is compared and computed as `f64` (a documented limit); types the query does not
/// compute with (dates, uuids, json, bytes, ...) are `Opaque`: compared by their text, passed
/// through unchanged.
#[derive(Debug, Clone)]
pub enum Datum {
    /// SQL NULL.
    Null,
    /// `boolean`.
    Bool(bool),
    /// Any integer type.
    Int(i64),
    /// `real` and `double precision`.
    Float(f64),
    /// `numeric`, exact text.
    Numeric(SharedStr),
    /// Text types.
    Text(SharedStr),
    /// Any other type: its canonical text and the original value.
    Opaque(Arc<(String, Value)>),
}

impl Datum {
    /// True for NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }

    /// The number as `f64`, for numeric kinds.
    pub(crate) fn as_f64(&self) -> Option<f64> {
        match self {
            Datum::Int(int) => Some(*int as f64),
            Datum::Float(float) => Some(*float),
            Datum::Numeric(text) => text.parse().ok(),
            _ => None,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Datum::Null => 0,
            Datum::Bool(_) => 1,
            Datum::Int(_) | Datum::Float(_) | Datum::Numeric(_) => 2,
            Datum::Text(_) => 3,
            Datum::Opaque(_) => 4,
        }
    }

    /// A total order: NULL first, then by kind; numbers compare by value, text by bytes (the
    /// C collation).
    pub fn total_cmp(&self, other: &Datum) -> Ordering {
        match (self, other) {
            (Datum::Bool(a), Datum::Bool(b)) => a.cmp(b),
            (Datum::Int(a), Datum::Int(b)) => a.cmp(b),
            (Datum::Text(a), Datum::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Datum::Opaque(a), Datum::Opaque(b)) => a.0.cmp(&b.0),
            (a, b) if a.rank() == 2 && b.rank() == 2 => {
                let (x, y) = (
                    a.as_f64().unwrap_or(f64::NAN),
                    b.as_f64().unwrap_or(f64::NAN),
                );
                x.total_cmp(&y)
            }
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }

    /// Converts an input value. `None` for [`Value::Unchanged`], which is not a value.
    pub fn from_value(value: &Value) -> Option<Datum> {
        Some(match value {
            Value::Unchanged => return None,
            Value::Null => Datum::Null,
            Value::Bool(b) => Datum::Bool(*b),
            Value::Int16(i) => Datum::Int(i64::from(*i)),
            Value::Int32(i) => Datum::Int(i64::from(*i)),
            Value::Int64(i) => Datum::Int(*i),
            Value::Float32(f) => Datum::Float(f64::from(*f)),
            Value::Float64(f) => Datum::Float(*f),
            Value::Numeric(n) => Datum::Numeric(n.as_str().into()),
            Value::Text(t) => Datum::Text(t.as_str().into()),
            other => Datum::Opaque(Arc::new((opaque_text(other), other.clone()))),
        })
    }

    /// Converts back to a value for output: integers as `Int64`, floats as `Float64`.
    pub fn to_value(&self) -> Value {
        match self {
            Datum::Null => Value::Null,
            Datum::Bool(b) => Value::Bool(*b),
            Datum::Int(i) => Value::Int64(*i),
            Datum::Float(f) => Value::Float64(*f),
            Datum::Numeric(text) => match text.parse::<Numeric>() {
                Ok(numeric) => Value::Numeric(numeric),
                Err(_) => Value::Text(text.to_string()),
            },
            Datum::Text(text) => Value::Text(text.to_string()),
            Datum::Opaque(opaque) => opaque.1.clone(),
        }
    }
}

fn opaque_text(value: &Value) -> String {
    match value {
        Value::Bytes(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Value::Json(json) => json.to_string(),
        Value::Date(date) => date.to_string(),
        Value::Time(time) => time.to_string(),
        Value::Timestamp(ts) => ts.to_string(),
        Value::TimestampTz(ts) => ts.to_rfc3339(),
        Value::Uuid(uuid) => uuid.to_string(),
        Value::Other { text, .. } => text.clone(),
        other => format!("{other:?}"),
    }
}

impl PartialEq for Datum {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Datum::Null, Datum::Null) => true,
            (Datum::Int(a), Datum::Int(b)) => a == b,
            (Datum::Text(a), Datum::Text(b)) => a == b,
            (Datum::Bool(a), Datum::Bool(b)) => a == b,
            _ => self.rank() == other.rank() && self.total_cmp(other) == Ordering::Equal,
        }
    }
}

impl Eq for Datum {}

impl PartialOrd for Datum {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Datum {
    fn cmp(&self, other: &Self) -> Ordering {
        self.total_cmp(other)
    }
}

impl Hash for Datum {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        // One write per value: keys are hashed on every delta. Equal numbers of different
        // kinds must hash alike, so integral numbers hash as their integer and the rest by
        // their f64 bits; other kinds mix in their rank, as numbers and the rest never
        // compare equal.
        match self {
            Datum::Int(int) => state.write_u64(*int as u64),
            Datum::Float(_) | Datum::Numeric(_) => {
                let float = self.as_f64().unwrap_or(f64::NAN);
                if float.fract() == 0.0 && float.abs() < 9.0e18 {
                    state.write_u64(float as i64 as u64);
                } else {
                    state.write_u64(float.to_bits());
                }
            }
            Datum::Null => state.write_u8(0),
            Datum::Bool(b) => state.write_u8(2 + u8::from(*b)),
            Datum::Text(text) => text.hash(state),
            Datum::Opaque(opaque) => {
                state.write_u8(4);
                opaque.0.hash(state);
            }
        }
    }
}

// Kept tuples hold four inline: a 16-byte datum keeps them at 72 bytes.
const _: () = assert!(size_of::<Datum>() == 16);

/// A tuple of datums: up to four inline, since keys and most kept rows are short (the
/// engine makes and drops tuples per change; inline ones cost no allocation).
pub type Tuple = smallvec::SmallVec<[Datum; 4]>;

/// A hash map of the query's state: foldhash, seeded per map (minimal DoS resistance, much
/// faster than SipHash on tuples).
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
