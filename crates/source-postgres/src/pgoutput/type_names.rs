//! Type names by OID: from Type messages seen on this connection, else PostgreSQL's built-in
//! types, else `oid:<n>`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use super::messages::{Oid, TypeInfo};

/// OIDs of the built-in types surefoot interprets.
pub mod oids {
    use super::Oid;

    /// `boolean`.
    pub const BOOL: Oid = 16;
    /// `bytea`.
    pub const BYTEA: Oid = 17;
    /// `name`.
    pub const NAME: Oid = 19;
    /// `bigint`.
    pub const INT8: Oid = 20;
    /// `smallint`.
    pub const INT2: Oid = 21;
    /// `integer`.
    pub const INT4: Oid = 23;
    /// `text`.
    pub const TEXT: Oid = 25;
    /// `json`.
    pub const JSON: Oid = 114;
    /// `real`.
    pub const FLOAT4: Oid = 700;
    /// `double precision`.
    pub const FLOAT8: Oid = 701;
    /// `character(n)`.
    pub const BPCHAR: Oid = 1042;
    /// `character varying(n)`.
    pub const VARCHAR: Oid = 1043;
    /// `date`.
    pub const DATE: Oid = 1082;
    /// `time without time zone`.
    pub const TIME: Oid = 1083;
    /// `timestamp without time zone`.
    pub const TIMESTAMP: Oid = 1114;
    /// `timestamp with time zone`.
    pub const TIMESTAMPTZ: Oid = 1184;
    /// `numeric`.
    pub const NUMERIC: Oid = 1700;
    /// `uuid`.
    pub const UUID: Oid = 2950;
    /// `jsonb`.
    pub const JSONB: Oid = 3802;
}

/// Names of common built-in types, as `format_type` spells them in short form.
const BUILT_IN: &[(Oid, &str)] = &[
    (16, "bool"),
    (17, "bytea"),
    (18, "char"),
    (19, "name"),
    (20, "int8"),
    (21, "int2"),
    (23, "int4"),
    (25, "text"),
    (26, "oid"),
    (114, "json"),
    (142, "xml"),
    (199, "json[]"),
    (600, "point"),
    (650, "cidr"),
    (651, "cidr[]"),
    (700, "float4"),
    (701, "float8"),
    (774, "macaddr8"),
    (790, "money"),
    (829, "macaddr"),
    (869, "inet"),
    (1000, "bool[]"),
    (1001, "bytea[]"),
    (1005, "int2[]"),
    (1007, "int4[]"),
    (1009, "text[]"),
    (1014, "bpchar[]"),
    (1015, "varchar[]"),
    (1016, "int8[]"),
    (1021, "float4[]"),
    (1022, "float8[]"),
    (1041, "inet[]"),
    (1042, "bpchar"),
    (1043, "varchar"),
    (1082, "date"),
    (1083, "time"),
    (1114, "timestamp"),
    (1115, "timestamp[]"),
    (1182, "date[]"),
    (1183, "time[]"),
    (1184, "timestamptz"),
    (1185, "timestamptz[]"),
    (1186, "interval"),
    (1187, "interval[]"),
    (1231, "numeric[]"),
    (1266, "timetz"),
    (1560, "bit"),
    (1562, "varbit"),
    (1700, "numeric"),
    (2950, "uuid"),
    (2951, "uuid[]"),
    (3220, "pg_lsn"),
    (3614, "tsvector"),
    (3615, "tsquery"),
    (3802, "jsonb"),
    (3807, "jsonb[]"),
    (3904, "int4range"),
    (3906, "numrange"),
    (3908, "tsrange"),
    (3910, "tstzrange"),
    (3912, "daterange"),
    (3926, "int8range"),
];

/// The name of a built-in type, if it is one surefoot knows.
pub fn built_in_type_name(oid: Oid) -> Option<&'static str> {
    BUILT_IN
        .iter()
        .find(|(known, _)| *known == oid)
        .map(|(_, name)| *name)
}

/// Type names learnt from Type messages, with the built-in table behind them.
#[derive(Debug, Clone, Default)]
pub struct TypeNames {
    learnt: HashMap<Oid, Arc<str>>,
}

impl TypeNames {
    /// An empty registry (built-in names are always known).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a Type message. The name is schema-qualified unless the schema is `pg_catalog`.
    pub fn learn(&mut self, info: &TypeInfo) {
        let name = match info.namespace.as_str() {
            "" | "pg_catalog" => info.name.clone(),
            schema => format!("{schema}.{}", info.name),
        };
        self.learnt.insert(info.id, name.into());
    }

    /// The type's name: learnt, else built-in, else `oid:<n>`.
    pub fn name(&self, oid: Oid) -> Cow<'_, str> {
        if let Some(name) = self.learnt.get(&oid) {
            return Cow::Borrowed(name);
        }
        match built_in_type_name(oid) {
            Some(name) => Cow::Borrowed(name),
            None => Cow::Owned(format!("oid:{oid}")),
        }
    }

    /// Forgets every learnt name (after a reconnect the server sends them again).
    pub fn clear(&mut self) {
        self.learnt.clear();
    }
}
