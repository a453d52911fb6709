//! The logical plan: what a continuous query computes, built from SQL by [`build`].
//!
//! A plan reads tables in FROM order, joins them left-deep on column equalities, filters, and
//! either projects (rows keyed by the tables' keys) or groups (rows keyed by the group key).

mod build;
mod from;
mod lexicon;
mod names;
mod refuse;
mod scalar;

use std::sync::Arc;

use crate::catalog::TableSchema;
use crate::expr::Expr;

pub use build::build;

/// An input table as the plan uses it.
#[derive(Debug, Clone)]
pub struct PlanTable {
    /// The table's schema from the catalog.
    pub schema: TableSchema,
    /// The name the query calls it by (alias or table name).
    pub alias: String,
    /// The columns the query keeps of each row: the key columns first, then the others it reads.
    pub kept: Vec<Arc<str>>,
}

impl PlanTable {
    /// Number of key columns (the first ones of [`PlanTable::kept`]).
    pub fn key_len(&self) -> usize {
        self.schema.key.len()
    }
}

/// How a table joins the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// `[INNER] JOIN`.
    Inner,
    /// `LEFT [OUTER] JOIN`.
    Left,
}

/// The join of table `n` (n ≥ 1) to tables `0..n`: `left[i] = right[i]` for every `i`.
#[derive(Debug, Clone)]
pub struct JoinStage {
    /// Inner or left.
    pub kind: JoinKind,
    /// `(table, kept column)` of earlier tables.
    pub left: Vec<(usize, usize)>,
    /// Kept columns of the joined table.
    pub right: Vec<usize>,
}

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateKind {
    /// `count(*)`.
    CountStar,
    /// `count(x)`: non-NULL values.
    Count,
    /// `sum(x)`.
    Sum,
    /// `avg(x)`.
    Avg,
    /// `min(x)`.
    Min,
    /// `max(x)`.
    Max,
}

/// One aggregate of a grouped query.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// Which function.
    pub kind: AggregateKind,
    /// Its argument (none for `count(*)`).
    pub arg: Option<Expr>,
}

/// A named output column.
#[derive(Debug, Clone)]
pub struct OutputColumn {
    /// Its name: the alias, the column's or function's name, or `?column?`.
    pub name: Arc<str>,
    /// Its value.
    pub expr: Expr,
}

/// What the query outputs.
#[derive(Debug, Clone)]
pub enum Output {
    /// One row per joined input row, keyed by the tables' keys.
    Project {
        /// The SELECT list.
        columns: Vec<OutputColumn>,
    },
    /// One row per group, keyed by the GROUP BY values.
    Group {
        /// The GROUP BY expressions (empty: one group over everything).
        keys: Vec<Expr>,
        /// The aggregates the SELECT list and HAVING use.
        aggregates: Vec<Aggregate>,
        /// HAVING.
        having: Option<Expr>,
        /// The SELECT list, over group keys and aggregates.
        columns: Vec<OutputColumn>,
    },
}

/// A whole query plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Input tables in FROM order.
    pub tables: Vec<PlanTable>,
    /// `joins[n - 1]` joins table `n`.
    pub joins: Vec<JoinStage>,
    /// WHERE.
    pub filter: Option<Expr>,
    /// Projection or grouping.
    pub output: Output,
}

impl Plan {
    /// The output columns.
    pub fn columns(&self) -> &[OutputColumn] {
        match &self.output {
            Output::Project { columns } | Output::Group { columns, .. } => columns,
        }
    }
}
