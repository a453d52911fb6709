//! SQL text to [`Plan`]: one SELECT over the catalog's tables, refusing the rest.

use sqlparser::ast::{self, GroupByExpr, Select, SelectItem, SetExpr, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::catalog::Catalog;
use crate::error::{QueryError, TextPosition};
use crate::expr::Expr;
use crate::plan::from::plan_from;
use crate::plan::names::{Scope, folded};
use crate::plan::refuse::{at, invalid, unsupported};
use crate::plan::scalar::ExprPlanner;
use crate::plan::{Aggregate, Output, OutputColumn, Plan};

const START: TextPosition = TextPosition { line: 1, column: 1 };

/// Parses `sql` (PostgreSQL dialect) and plans it over `catalog`.
pub fn build(sql: &str, catalog: &Catalog) -> Result<Plan, QueryError> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|source| QueryError::Syntax { source })?;
    let statement = match statements.as_slice() {
        [statement] => statement,
        [] => return Err(invalid("the query is empty", START)),
        [_, second, ..] => return Err(unsupported("more than one statement", second, START)),
    };
    let Statement::Query(query) = statement else {
        return Err(unsupported(
            "a statement other than SELECT",
            statement,
            START,
        ));
    };
    let here = at(&**query, START);
    refuse_query_clauses(query, here)?;
    let select = match &*query.body {
        SetExpr::Select(select) => select,
        SetExpr::SetOperation { op, .. } => {
            return Err(unsupported(
                format!("{op} (a set operation)"),
                &*query.body,
                here,
            ));
        }
        SetExpr::Query(_) => return Err(unsupported("a parenthesised query", &*query.body, here)),
        other => {
            return Err(unsupported(
                format!(
                    "{} as a query body",
                    crate::plan::refuse::variant_name(other)
                ),
                other,
                here,
            ));
        }
    };
    plan_select(select, catalog, here)
}

fn refuse_query_clauses(query: &ast::Query, here: TextPosition) -> Result<(), QueryError> {
    if let Some(with) = &query.with {
        return Err(unsupported("WITH (a common table expression)", with, here));
    }
    if let Some(order_by) = &query.order_by {
        return Err(unsupported("ORDER BY", order_by, here));
    }
    if let Some(limit) = &query.limit_clause {
        return Err(unsupported("LIMIT / OFFSET", limit, here));
    }
    if let Some(fetch) = &query.fetch {
        return Err(unsupported("FETCH", fetch, here));
    }
    if !query.locks.is_empty() {
        return Err(invalid("FOR UPDATE / FOR SHARE is not supported", here));
    }
    if query.for_clause.is_some() || query.settings.is_some() || query.format_clause.is_some() {
        return Err(invalid(
            "FOR / SETTINGS / FORMAT clauses are not supported",
            here,
        ));
    }
    if !query.pipe_operators.is_empty() {
        return Err(invalid("pipe operators are not supported", here));
    }
    Ok(())
}

fn refuse_select_clauses(select: &Select, here: TextPosition) -> Result<(), QueryError> {
    let at_select = at(select, here);
    let clause = |present: bool, construct: &str| {
        if present {
            Err(QueryError::Unsupported {
                construct: construct.to_owned(),
                at: at_select,
            })
        } else {
            Ok(())
        }
    };
    clause(
        matches!(select.distinct, Some(ast::Distinct::On(_))),
        "DISTINCT ON",
    )?;
    clause(select.distinct.is_some(), "SELECT DISTINCT")?;
    clause(select.top.is_some(), "TOP")?;
    clause(select.into.is_some(), "SELECT INTO")?;
    clause(!select.lateral_views.is_empty(), "LATERAL VIEW")?;
    clause(select.prewhere.is_some(), "PREWHERE")?;
    clause(!select.connect_by.is_empty(), "CONNECT BY")?;
    clause(
        !select.cluster_by.is_empty() || !select.distribute_by.is_empty(),
        "CLUSTER/DISTRIBUTE BY",
    )?;
    clause(!select.sort_by.is_empty(), "SORT BY")?;
    clause(!select.named_window.is_empty(), "WINDOW (a named window)")?;
    clause(select.qualify.is_some(), "QUALIFY")?;
    clause(select.value_table_mode.is_some(), "SELECT AS VALUE/STRUCT")?;
    clause(select.exclude.is_some(), "EXCLUDE")?;
    Ok(())
}

fn plan_select(
    select: &Select,
    catalog: &Catalog,
    fallback: TextPosition,
) -> Result<Plan, QueryError> {
    let here = at(select, fallback);
    refuse_select_clauses(select, here)?;
    let from = match select.from.as_slice() {
        [from] => from,
        [] => return Err(invalid("a continuous query needs FROM", here)),
        [_, second, ..] => {
            return Err(unsupported(
                "a comma in FROM (an implicit cross join)",
                second,
                here,
            ));
        }
    };
    let mut scope = Scope::default();
    let joins = plan_from(from, catalog, &mut scope, here)?;
    scope.visible = scope.tables.len();
    let filter = select
        .selection
        .as_ref()
        .map(|e| planner(&mut scope, None, "WHERE").plan(e, here))
        .transpose()?;
    let group_exprs = match &select.group_by {
        GroupByExpr::Expressions(exprs, modifiers) => {
            if let Some(modifier) = modifiers.first() {
                return Err(QueryError::Unsupported {
                    construct: format!("GROUP BY ... {modifier}"),
                    at: here,
                });
            }
            exprs
        }
        GroupByExpr::All(_) => return Err(unsupported("GROUP BY ALL", &select.group_by, here)),
    };
    let mut keys = Vec::new();
    for expr in group_exprs {
        if let ast::Expr::Value(_) = expr {
            return Err(unsupported("GROUP BY a position", expr, here));
        }
        if let ast::Expr::Rollup(_) | ast::Expr::Cube(_) | ast::Expr::GroupingSets(_) = expr {
            return Err(unsupported("ROLLUP / CUBE / GROUPING SETS", expr, here));
        }
        keys.push(planner(&mut scope, None, "GROUP BY").plan(expr, here)?);
    }
    let mut aggregates = Vec::new();
    let mut columns = Vec::new();
    for item in &select.projection {
        columns.push(plan_item(item, &mut scope, &mut aggregates, here)?);
    }
    let having = select
        .having
        .as_ref()
        .map(|e| {
            planner(&mut scope, Some(&mut aggregates), "HAVING")
                .plan(e, here)
                .map(|x| (x, at(e, here)))
        })
        .transpose()?;
    let grouped = !keys.is_empty() || !aggregates.is_empty() || having.is_some();
    let output = if grouped {
        let mut grouped_columns = Vec::new();
        for (column, item_at) in columns {
            let expr = over_groups(column.expr, &keys, &scope, item_at)?;
            grouped_columns.push(OutputColumn {
                name: column.name,
                expr,
            });
        }
        let having = having
            .map(|(expr, having_at)| over_groups(expr, &keys, &scope, having_at))
            .transpose()?;
        Output::Group {
            keys,
            aggregates,
            having,
            columns: grouped_columns,
        }
    } else {
        Output::Project {
            columns: columns.into_iter().map(|(c, _)| c).collect(),
        }
    };
    Ok(Plan {
        tables: scope.tables,
        joins,
        filter,
        output,
    })
}

fn planner<'a>(
    scope: &'a mut Scope,
    aggregates: Option<&'a mut Vec<Aggregate>>,
    clause: &'static str,
) -> ExprPlanner<'a> {
    ExprPlanner {
        scope,
        aggregates,
        clause,
        in_aggregate: false,
    }
}

fn plan_item(
    item: &SelectItem,
    scope: &mut Scope,
    aggregates: &mut Vec<Aggregate>,
    fallback: TextPosition,
) -> Result<(OutputColumn, TextPosition), QueryError> {
    let (expr, alias) = match item {
        SelectItem::UnnamedExpr(expr) => (expr, None),
        SelectItem::ExprWithAlias { expr, alias } => (expr, Some(folded(alias))),
        SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
            return Err(unsupported("SELECT * (name the columns)", item, fallback));
        }
    };
    let here = at(expr, fallback);
    let planned = planner(scope, Some(aggregates), "SELECT").plan(expr, here)?;
    let name = alias.unwrap_or_else(|| default_name(expr));
    Ok((
        OutputColumn {
            name: name.into(),
            expr: planned,
        },
        here,
    ))
}

/// The name PostgreSQL gives an unaliased output column.
fn default_name(expr: &ast::Expr) -> String {
    match expr {
        ast::Expr::Identifier(ident) => folded(ident),
        ast::Expr::CompoundIdentifier(parts) => parts.last().map(folded).unwrap_or_default(),
        ast::Expr::Function(function) => function.name.to_string().to_lowercase(),
        ast::Expr::Cast { expr, .. } | ast::Expr::Nested(expr) => default_name(expr),
        ast::Expr::Case { .. } => "case".into(),
        _ => "?column?".into(),
    }
}

/// Rewrites an expression of a grouped query over its group keys and aggregates; a column
/// outside both is an error, as in PostgreSQL.
fn over_groups(
    mut expr: Expr,
    keys: &[Expr],
    scope: &Scope,
    here: TextPosition,
) -> Result<Expr, QueryError> {
    rewrite(&mut expr, keys).map_err(|(table, column)| {
        let table = &scope.tables[table];
        invalid(
            format!(
                "column `{}.{}` must appear in GROUP BY or be used in an aggregate",
                table.alias, table.kept[column]
            ),
            here,
        )
    })?;
    Ok(expr)
}

fn rewrite(expr: &mut Expr, keys: &[Expr]) -> Result<(), (usize, usize)> {
    if let Some(index) = keys.iter().position(|key| key == expr) {
        *expr = Expr::GroupKey(index);
        return Ok(());
    }
    if let Expr::Column { table, column } = expr {
        return Err((*table, *column));
    }
    for child in expr.children_mut() {
        rewrite(child, keys)?;
    }
    Ok(())
}
