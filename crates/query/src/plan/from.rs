//! FROM: the tables of a query and the left-deep equi-joins between them.

use sqlparser::ast::{self, JoinConstraint, JoinOperator, TableFactor, TableWithJoins};

use crate::catalog::Catalog;
use crate::error::{QueryError, TextPosition};
use crate::expr::Expr;
use crate::plan::lexicon::is_column;
use crate::plan::names::{Scope, folded};
use crate::plan::refuse::{at, invalid, unsupported, variant_name};
use crate::plan::scalar::ExprPlanner;
use crate::plan::{JoinKind, JoinStage, PlanTable};

fn planner(scope: &mut Scope) -> ExprPlanner<'_> {
    ExprPlanner {
        scope,
        aggregates: None,
        clause: "ON",
        in_aggregate: false,
    }
}

/// The tables of `from` into `scope`, and the join stage of each table after the first.
pub(crate) fn plan_from(
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
                    format!("the join {}", variant_name(other)),
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
            other => format!("{} in FROM", variant_name(other)),
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
        .map_or_else(|| schema.name_in_sql().to_owned(), |a| folded(&a.name));
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
        let a = planner(scope).plan(left, here)?;
        let b = planner(scope).plan(right, here)?;
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
