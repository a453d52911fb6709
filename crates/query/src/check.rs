//! Checking a query's language without the tables: what `surefoot check` reports before any
//! database is reachable.

use std::collections::BTreeSet;

use sqlparser::ast::{Statement, TableFactor, TableWithJoins};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};
use surefoot_core_model::TableRef;

use crate::catalog::{Catalog, TableSchema};
use crate::error::QueryError;
use crate::plan::build;

/// A key column no query names, for the stand-in tables.
const STAND_IN_KEY: &str = "__surefoot_check_key";

/// Checks `sql` against the supported subset without knowing the tables: a syntax error or an
/// unsupported construct is returned with its position, as [`crate::ContinuousQuery::new`]
/// would return it. Names (tables, columns) are not checked: each table the query reads stands
/// in with every column it names, so only creating the query over the real catalog finds an
/// unknown column.
pub fn check_language(sql: &str) -> Result<(), QueryError> {
    let catalog = stand_in_catalog(sql)?;
    match build(sql, &catalog) {
        Err(error @ (QueryError::Syntax { .. } | QueryError::Unsupported { .. })) => Err(error),
        // An `Invalid` error here may come from the stand-in tables, not from the query.
        Ok(_) | Err(QueryError::Invalid { .. }) => Ok(()),
    }
}

/// A catalog with every table the query reads, each with every word of the query as a column.
fn stand_in_catalog(sql: &str) -> Result<Catalog, QueryError> {
    let dialect = PostgreSqlDialect {};
    let statements =
        Parser::parse_sql(&dialect, sql).map_err(|source| QueryError::Syntax { source })?;
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|error| QueryError::Syntax {
            source: sqlparser::parser::ParserError::TokenizerError(error.to_string()),
        })?;
    let words: Vec<String> = tokens
        .iter()
        .filter_map(|token| match token {
            Token::Word(word) => Some(word.value.to_lowercase()),
            _ => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut columns: Vec<&str> = vec![STAND_IN_KEY];
    columns.extend(words.iter().map(String::as_str));
    let mut catalog = Catalog::new();
    let mut tables = BTreeSet::new();
    for statement in &statements {
        if let Statement::Query(query) = statement
            && let sqlparser::ast::SetExpr::Select(select) = &*query.body
        {
            for from in &select.from {
                collect_tables(from, &mut tables);
            }
        }
    }
    for (schema, name) in tables {
        let table = TableRef::new(schema.as_deref().unwrap_or("public"), name.as_str());
        catalog = catalog.with(TableSchema::new(table, &columns, &[STAND_IN_KEY]));
    }
    Ok(catalog)
}

fn collect_tables(from: &TableWithJoins, tables: &mut BTreeSet<(Option<String>, String)>) {
    let factors = std::iter::once(&from.relation).chain(from.joins.iter().map(|j| &j.relation));
    for factor in factors {
        if let TableFactor::Table { name, .. } = factor {
            let parts: Vec<String> = name
                .0
                .iter()
                .filter_map(|part| part.as_ident().map(|ident| ident.value.to_lowercase()))
                .collect();
            match parts.as_slice() {
                [table] => tables.insert((None, table.clone())),
                [schema, table] => tables.insert((Some(schema.clone()), table.clone())),
                _ => false,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_queries_pass_without_their_tables() {
        for sql in [
            "SELECT id, amount * 2 AS double FROM orders WHERE amount > 10",
            "SELECT c.region, count(*) FROM orders o JOIN customers c ON o.customer = c.id \
             GROUP BY c.region HAVING count(*) > 1",
            "SELECT o.id, c.name FROM shop.orders o LEFT JOIN customers c ON o.customer = c.id",
        ] {
            check_language(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    #[test]
    fn unsupported_constructs_and_syntax_errors_are_reported_with_their_position() {
        let error = check_language("SELECT id, rank() OVER (ORDER BY id) FROM orders").unwrap_err();
        assert!(matches!(error, QueryError::Unsupported { .. }), "{error}");
        assert_eq!(error.position().map(|p| p.column), Some(12), "{error}");
        let error = check_language("SELECT id FROM orders ORDER BY id").unwrap_err();
        assert!(matches!(error, QueryError::Unsupported { .. }), "{error}");
        let error = check_language("SELEC id FROM orders").unwrap_err();
        assert!(matches!(error, QueryError::Syntax { .. }), "{error}");
    }
}
