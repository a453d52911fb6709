//! Name resolution: which table a column belongs to, and which columns each table keeps.

use std::sync::Arc;

use sqlparser::ast::Ident;

use crate::error::{QueryError, TextPosition};
use crate::expr::Expr;
use crate::plan::PlanTable;
use crate::plan::refuse::{invalid, position};

/// An identifier as PostgreSQL folds it: lower case unless quoted.
pub(crate) fn folded(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// The tables in scope, and the columns kept of each.
#[derive(Debug, Default)]
pub(crate) struct Scope {
    pub(crate) tables: Vec<PlanTable>,
    /// Only tables `0..visible` can be named (a JOIN's ON sees the tables joined so far).
    pub(crate) visible: usize,
}

impl Scope {
    /// A column reference: `name` or `table.name`.
    pub(crate) fn column(
        &mut self,
        parts: &[Ident],
        fallback: TextPosition,
    ) -> Result<Expr, QueryError> {
        let at = parts
            .first()
            .map_or(fallback, |part| position(part.span, fallback));
        let (qualifier, name) = match parts {
            [name] => (None, folded(name)),
            [table, name] => (Some(folded(table)), folded(name)),
            _ => return Err(invalid("a column is named `column` or `table.column`", at)),
        };
        let mut found = None;
        for (index, table) in self.tables[..self.visible].iter().enumerate() {
            if qualifier.as_ref().is_some_and(|q| *q != table.alias) {
                continue;
            }
            if table.schema.columns.iter().any(|c| **c == *name) {
                if found.is_some() {
                    return Err(invalid(format!("column `{name}` is ambiguous"), at));
                }
                found = Some(index);
            }
        }
        let Some(table) = found else {
            return Err(match &qualifier {
                Some(q) if !self.tables[..self.visible].iter().any(|t| t.alias == *q) => {
                    invalid(format!("no table `{q}` in scope"), at)
                }
                _ => invalid(format!("unknown column `{name}`"), at),
            });
        };
        let column = self.keep(table, &name);
        Ok(Expr::Column { table, column })
    }

    /// The index of `name` among the kept columns of `table`, keeping it if new.
    pub(crate) fn keep(&mut self, table: usize, name: &str) -> usize {
        let kept = &mut self.tables[table].kept;
        match kept.iter().position(|c| &**c == name) {
            Some(index) => index,
            None => {
                kept.push(Arc::from(name));
                kept.len() - 1
            }
        }
    }
}
