//! SQL text to [`Plan`]: one SELECT over the catalog's tables, refusing the rest.

use sqlparser::ast::{
    self, GroupByExpr, JoinConstraint, JoinOperator, Select, SelectItem, SetExpr, Statement,
    TableFactor, TableWithJoins,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::catalog::Catalog;
use crate::error::{QueryError, TextPosition};
use crate::expr::Expr;
use crate::plan::names::{Scope, folded};
use crate::plan::refuse::{at, invalid, unsupported};
use crate::plan::scalar::{ExprPlanner, is_column};
use crate::plan::{Aggregate, JoinKind, JoinStage, Output, OutputColumn, Plan, PlanTable};

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

fn plan_from(
    from: &TableWithJoins,
    catalog: &Catalog,
    scope: &mut Scope,
    fallback: TextPosition,
) -> Result<Vec<JoinStage>, QueryError> {
    add_table(&from.relation, catalog, scope, fallback)?;
    let mut stages = Vec::new();
    for join in &from.joins {
        let here = at(join, fallback);
        let (kind, constraint) = match &join.join_operator {
            JoinOperator::Join(c) | JoinOperator::Inner(c) => (JoinKind::Inner, c),
            JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinKind::Left, c),
            JoinOperator::Right(_) | JoinOperator::RightOuter(_) => {
                return Err(unsupported("RIGHT JOIN", join, here));
            }
            JoinOperator::FullOuter(_) => return Err(unsupported("FULL JOIN", join, here)),
            JoinOperator::CrossJoin(_) => return Err(unsupported("CROSS JOIN", join, here)),
            other => {
                return Err(unsupported(
                    format!("the join {}", crate::plan::refuse::variant_name(other)),
                    join,
                    here,
                ));
            }
        };
        add_table(&join.relation, catalog, scope, here)?;
        let on = match constraint {
            JoinConstraint::On(on) => on,
            JoinConstraint::Using(_) => return Err(unsupported("JOIN ... USING", join, here)),
            JoinConstraint::Natural => return Err(unsupported("NATURAL JOIN", join, here)),
            JoinConstraint::None => return Err(invalid("a JOIN needs ON", here)),
        };
        stages.push(plan_on(kind, on, scope, here)?);
    }
    Ok(stages)
}

fn add_table(
    factor: &TableFactor,
    catalog: &Catalog,
    scope: &mut Scope,
    fallback: TextPosition,
) -> Result<(), QueryError> {
    let here = at(factor, fallback);
    let TableFactor::Table {
        name,
        alias,
        args,
        with_hints,
        version,
        with_ordinality,
        partitions,
        ..
    } = factor
    else {
        let what = match factor {
            TableFactor::Derived { .. } => "a subquery in FROM".to_owned(),
            TableFactor::NestedJoin { .. } => "a parenthesised join".to_owned(),
            other => format!("{} in FROM", crate::plan::refuse::variant_name(other)),
        };
        return Err(unsupported(what, factor, here));
    };
    if args.is_some()
        || !with_hints.is_empty()
        || version.is_some()
        || *with_ordinality
        || !partitions.is_empty()
    {
        return Err(unsupported("a table function or table hint", factor, here));
    }
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| part.as_ident().map(folded))
        .collect::<Option<_>>()
        .ok_or_else(|| unsupported("a computed table name", factor, here))?;
    let schema = match parts.as_slice() {
        [name] => catalog.find(None, name),
        [schema, name] => catalog.find(Some(schema), name),
        _ => {
            return Err(invalid(
                format!("table names are `table` or `schema.table`, not {name}"),
                here,
            ));
        }
    }
    .ok_or_else(|| invalid(format!("unknown table {name}"), here))?;
    if let Some(alias) = alias
        && !alias.columns.is_empty()
    {
        return Err(unsupported("column aliases on a table", factor, here));
    }
    let alias_name = alias
        .as_ref()
        .map_or_else(|| schema.table.name.to_string(), |a| folded(&a.name));
    if scope.tables.iter().any(|t| t.alias == alias_name) {
        return Err(invalid(
            format!("table name `{alias_name}` specified more than once"),
            here,
        ));
    }
    if schema.key.is_empty() {
        return Err(invalid(
            format!("table {} has no key in the catalog", schema.table),
            here,
        ));
    }
    scope.tables.push(PlanTable {
        schema: schema.clone(),
        alias: alias_name,
        kept: schema.key.clone(),
    });
    scope.visible = scope.tables.len();
    Ok(())
}

fn plan_on(
    kind: JoinKind,
    on: &ast::Expr,
    scope: &mut Scope,
    fallback: TextPosition,
) -> Result<JoinStage, QueryError> {
    let right_table = scope.tables.len() - 1;
    let mut stage = JoinStage {
        kind,
        left: Vec::new(),
        right: Vec::new(),
    };
    let mut conjuncts = Vec::new();
    split_and(on, &mut conjuncts);
    for conjunct in conjuncts {
        let here = at(conjunct, fallback);
        let ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::Eq,
            right,
        } = conjunct
        else {
            return Err(unsupported(
                "a join condition other than column = column (a non-equi join)",
                conjunct,
                here,
            ));
        };
        if !is_column(left) || !is_column(right) {
            return Err(unsupported(
                "a join condition other than column = column (a non-equi join)",
                conjunct,
                here,
            ));
        }
        let a = planner(scope, None, "ON").plan(left, here)?;
        let b = planner(scope, None, "ON").plan(right, here)?;
        let (
            Expr::Column {
                table: ta,
                column: ca,
            },
            Expr::Column {
                table: tb,
                column: cb,
            },
        ) = (a, b)
        else {
            return Err(invalid("a join condition compares columns", here));
        };
        let pair = match (ta == right_table, tb == right_table) {
            (false, true) => ((ta, ca), cb),
            (true, false) => ((tb, cb), ca),
            _ => {
                return Err(unsupported(
                    "a join condition that does not link the joined table to an earlier one",
                    conjunct,
                    here,
                ));
            }
        };
        stage.left.push(pair.0);
        stage.right.push(pair.1);
    }
    Ok(stage)
}

fn split_and<'a>(expr: &'a ast::Expr, out: &mut Vec<&'a ast::Expr>) {
    match expr {
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::And,
            right,
        } => {
            split_and(left, out);
            split_and(right, out);
        }
        ast::Expr::Nested(inner) => split_and(inner, out),
        other => out.push(other),
    }
}
