//! Identifiers from configuration: validated once, quoted wherever they reach SQL.
//!
//! Nothing from configuration is spliced into SQL raw. Slot names are restricted by PostgreSQL
//! itself to lower-case letters, digits and underscores; every other identifier is quoted with
//! double quotes (a double quote inside is doubled).

use std::fmt;

use serde::{Deserialize, Deserializer};

/// PostgreSQL truncates identifiers longer than this many bytes (NAMEDATALEN - 1).
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Why a name from configuration is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    /// The name is empty.
    #[error("{kind} name is empty")]
    Empty {
        /// What was being named (`slot`, `publication`, `table`).
        kind: &'static str,
    },
    /// The name is longer than PostgreSQL keeps.
    #[error("{kind} name `{name}` is {bytes} bytes; PostgreSQL keeps at most 63")]
    TooLong {
        /// What was being named.
        kind: &'static str,
        /// The name.
        name: String,
        /// Its length in bytes.
        bytes: usize,
    },
    /// The name contains a character that is not allowed.
    #[error("{kind} name `{name}` may contain only {allowed}")]
    InvalidCharacter {
        /// What was being named.
        kind: &'static str,
        /// The name.
        name: String,
        /// The characters allowed.
        allowed: &'static str,
    },
}

/// A SQL identifier (publication, schema, table), rendered quoted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identifier(String);

impl Identifier {
    /// Validates `name` as an identifier of the given kind (used in error messages).
    pub fn parse(kind: &'static str, name: &str) -> Result<Self, IdentifierError> {
        check_length(kind, name)?;
        if name.contains('\0') {
            return Err(IdentifierError::InvalidCharacter {
                kind,
                name: name.to_owned(),
                allowed: "characters other than NUL",
            });
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as written in configuration (unquoted).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name quoted for SQL: `"my ""odd"" name"`.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0.replace('"', "\"\""))
    }
}

impl fmt::Display for Identifier {
    /// The quoted form, ready for SQL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.quoted())
    }
}

/// A replication slot name: 1 to 63 of `a-z`, `0-9`, `_` (PostgreSQL's own rule).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SlotName(String);

impl SlotName {
    /// Validates a slot name.
    pub fn parse(name: &str) -> Result<Self, IdentifierError> {
        check_length("slot", name)?;
        let valid = name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_');
        if !valid {
            return Err(IdentifierError::InvalidCharacter {
                kind: "slot",
                name: name.to_owned(),
                allowed: "lower-case letters, digits and underscores",
            });
        }
        Ok(Self(name.to_owned()))
    }

    /// The slot name. Safe to place in a replication command as is: validation admits only
    /// characters that need no quoting.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SlotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A table, by schema and name, both validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    /// The schema.
    pub schema: Identifier,
    /// The table.
    pub table: Identifier,
}

impl TableName {
    /// Parses `schema.table` or `table` (schema `public`). A dot inside a name is not supported.
    pub fn parse(text: &str) -> Result<Self, IdentifierError> {
        let (schema, table) = text.split_once('.').unwrap_or(("public", text));
        Ok(Self {
            schema: Identifier::parse("schema", schema)?,
            table: Identifier::parse("table", table)?,
        })
    }

    /// `"schema"."table"`, ready for SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", self.schema.quoted(), self.table.quoted())
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.quoted())
    }
}

fn check_length(kind: &'static str, name: &str) -> Result<(), IdentifierError> {
    if name.is_empty() {
        return Err(IdentifierError::Empty { kind });
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(IdentifierError::TooLong {
            kind,
            name: name.to_owned(),
            bytes: name.len(),
        });
    }
    Ok(())
}

macro_rules! deserialize_validated {
    ($type:ty, $parse:expr) => {
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                $parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

deserialize_validated!(SlotName, SlotName::parse);
deserialize_validated!(TableName, TableName::parse);
deserialize_validated!(Identifier, |text: &str| Identifier::parse(
    "identifier",
    text
));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_inner_quotes_doubled() {
        let name = Identifier::parse("publication", r#"pub"; DROP TABLE x; --"#).unwrap();
        assert_eq!(name.quoted(), r#""pub""; DROP TABLE x; --""#);
        let table = TableName::parse("Sales.Order Lines").unwrap();
        assert_eq!(table.quoted(), r#""Sales"."Order Lines""#);
        assert_eq!(
            TableName::parse("orders").unwrap().quoted(),
            r#""public"."orders""#
        );
    }

    #[test]
    fn invalid_names_are_rejected_with_the_reason() {
        assert_eq!(
            Identifier::parse("publication", ""),
            Err(IdentifierError::Empty {
                kind: "publication"
            })
        );
        assert!(matches!(
            Identifier::parse("table", &"x".repeat(64)),
            Err(IdentifierError::TooLong { bytes: 64, .. })
        ));
        assert!(Identifier::parse("table", "a\0b").is_err());
        for bad in ["Slot", "slot-1", "slot 1", "sl\"ot", ""] {
            assert!(SlotName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            SlotName::parse("surefoot_1").unwrap().as_str(),
            "surefoot_1"
        );
    }

    #[test]
    fn names_deserialise_through_validation() {
        let slot: Result<SlotName, _> = serde_json::from_str(r#""Bad-Slot""#);
        let message = slot.unwrap_err().to_string();
        assert!(message.contains("lower-case letters"), "{message}");
        let table: TableName = serde_json::from_str(r#""app.users""#).unwrap();
        assert_eq!(table.to_string(), r#""app"."users""#);
    }
}
