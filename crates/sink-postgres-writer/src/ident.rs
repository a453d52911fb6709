//! Names from configuration: checked once, always double-quoted where they reach SQL.

use std::fmt;

/// PostgreSQL keeps at most this many bytes of an identifier (NAMEDATALEN - 1).
const MAX_IDENT_BYTES: usize = 63;

/// A column, table or schema name, valid for PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

/// Why a name is not usable as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    /// The name is empty.
    #[error("must not be empty")]
    Empty,
    /// The name is longer than PostgreSQL keeps, so it would be silently truncated.
    #[error("`{0}` is longer than 63 bytes")]
    TooLong(String),
    /// The name contains a NUL byte, which PostgreSQL cannot store.
    #[error("`{0}` contains a NUL byte")]
    Nul(String),
}

impl Ident {
    /// Checks `name`.
    pub fn parse(name: &str) -> Result<Self, IdentError> {
        if name.is_empty() {
            Err(IdentError::Empty)
        } else if name.len() > MAX_IDENT_BYTES {
            Err(IdentError::TooLong(name.to_owned()))
        } else if name.contains('\0') {
            Err(IdentError::Nul(name.to_owned()))
        } else {
            Ok(Self(name.to_owned()))
        }
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name double-quoted for SQL, inner quotes doubled.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0.replace('"', "\"\""))
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A table name with its schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QualifiedName {
    /// The schema.
    pub schema: Ident,
    /// The table.
    pub table: Ident,
}

impl QualifiedName {
    /// `schema.table`, or `table` in `public`. Names containing a dot must be given as parts.
    pub fn parse(text: &str) -> Result<Self, IdentError> {
        match text.split_once('.') {
            Some((schema, table)) => Self::new(schema, table),
            None => Self::new("public", text),
        }
    }

    /// A name from its parts.
    pub fn new(schema: &str, table: &str) -> Result<Self, IdentError> {
        Ok(Self {
            schema: Ident::parse(schema)?,
            table: Ident::parse(table)?,
        })
    }

    /// `"schema"."table"` for SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", self.schema.quoted(), self.table.quoted())
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_inner_quotes() {
        let name = QualifiedName::parse("app.we\"ird").unwrap();
        assert_eq!(name.quoted(), "\"app\".\"we\"\"ird\"");
        assert_eq!(QualifiedName::parse("t").unwrap().to_string(), "public.t");
        assert_eq!(Ident::parse(""), Err(IdentError::Empty));
        assert!(matches!(
            Ident::parse(&"x".repeat(64)),
            Err(IdentError::TooLong(_))
        ));
        assert!(matches!(Ident::parse("a\0"), Err(IdentError::Nul(_))));
    }
}
