//! Scalar expressions: sqlparser's AST to [`Expr`], refusing what the subset lacks.

use sqlparser::ast::{
    self, CastKind, DuplicateTreatment, FunctionArg, FunctionArgExpr, FunctionArguments,
    ObjectNamePart, UnaryOperator,
};

use crate::datum::Datum;
use crate::error::{QueryError, TextPosition};
use crate::expr::{BinaryOp, Expr, Function};
use crate::plan::lexicon::{aggregate_kind, binary_op, cast_type, literal, scalar_function};
use crate::plan::names::{Scope, folded};
use crate::plan::refuse::{at, invalid, unsupported, variant_name};
use crate::plan::{Aggregate, AggregateKind};

/// Plans the expressions of one clause.
pub(crate) struct ExprPlanner<'a> {
    pub(crate) scope: &'a mut Scope,
    /// Where aggregates go; `None` where they are not allowed (WHERE, ON, GROUP BY).
    pub(crate) aggregates: Option<&'a mut Vec<Aggregate>>,
    /// The clause, for messages.
    pub(crate) clause: &'static str,
    pub(crate) in_aggregate: bool,
}

type Planned = Result<Expr, QueryError>;

impl ExprPlanner<'_> {
    pub(crate) fn plan(&mut self, expr: &ast::Expr, fallback: TextPosition) -> Planned {
        let here = at(expr, fallback);
        let boxed = |e: Expr| Box::new(e);
        Ok(match expr {
            ast::Expr::Identifier(ident) => self.scope.column(std::slice::from_ref(ident), here)?,
            ast::Expr::CompoundIdentifier(parts) => self.scope.column(parts, here)?,
            ast::Expr::Value(value) => Expr::Literal(literal(&value.value, expr, here)?),
            ast::Expr::Nested(inner) => self.plan(inner, here)?,
            ast::Expr::BinaryOp { left, op, right } => {
                let op = binary_op(op)
                    .ok_or_else(|| unsupported(format!("the operator `{op}`"), expr, here))?;
                Expr::Binary(
                    op,
                    boxed(self.plan(left, here)?),
                    boxed(self.plan(right, here)?),
                )
            }
            ast::Expr::UnaryOp { op, expr: inner } => {
                let inner = self.plan(inner, here)?;
                match op {
                    UnaryOperator::Not => Expr::Not(boxed(inner)),
                    UnaryOperator::Minus => Expr::Negate(boxed(inner)),
                    UnaryOperator::Plus => inner,
                    other => {
                        return Err(unsupported(format!("the operator `{other}`"), expr, here));
                    }
                }
            }
            ast::Expr::IsNull(inner) | ast::Expr::IsNotNull(inner) => Expr::IsNull {
                expr: boxed(self.plan(inner, here)?),
                negated: matches!(expr, ast::Expr::IsNotNull(_)),
            },
            ast::Expr::IsDistinctFrom(a, b) | ast::Expr::IsNotDistinctFrom(a, b) => {
                Expr::IsDistinct {
                    left: boxed(self.plan(a, here)?),
                    right: boxed(self.plan(b, here)?),
                    negated: matches!(expr, ast::Expr::IsNotDistinctFrom(..)),
                }
            }
            ast::Expr::InList {
                expr: inner,
                list,
                negated,
            } => Expr::InList {
                expr: boxed(self.plan(inner, here)?),
                list: list
                    .iter()
                    .map(|item| self.plan(item, here))
                    .collect::<Result<_, _>>()?,
                negated: *negated,
            },
            ast::Expr::Between {
                expr: inner,
                negated,
                low,
                high,
            } => {
                let value = self.plan(inner, here)?;
                let range = Expr::Binary(
                    BinaryOp::And,
                    boxed(Expr::Binary(
                        BinaryOp::GtEq,
                        boxed(value.clone()),
                        boxed(self.plan(low, here)?),
                    )),
                    boxed(Expr::Binary(
                        BinaryOp::LtEq,
                        boxed(value),
                        boxed(self.plan(high, here)?),
                    )),
                );
                if *negated {
                    Expr::Not(boxed(range))
                } else {
                    range
                }
            }
            ast::Expr::Like {
                negated,
                any,
                expr: inner,
                pattern,
                escape_char,
            }
            | ast::Expr::ILike {
                negated,
                any,
                expr: inner,
                pattern,
                escape_char,
            } => {
                if *any {
                    return Err(unsupported("LIKE ANY", expr, here));
                }
                if escape_char.is_some() {
                    return Err(unsupported("LIKE ... ESCAPE", expr, here));
                }
                Expr::Like {
                    expr: boxed(self.plan(inner, here)?),
                    pattern: boxed(self.plan(pattern, here)?),
                    negated: *negated,
                    case_insensitive: matches!(expr, ast::Expr::ILike { .. }),
                }
            }
            ast::Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => Expr::Case {
                operand: operand
                    .as_ref()
                    .map(|o| self.plan(o, here).map(boxed))
                    .transpose()?,
                branches: conditions
                    .iter()
                    .map(|w| Ok((self.plan(&w.condition, here)?, self.plan(&w.result, here)?)))
                    .collect::<Result<_, QueryError>>()?,
                otherwise: else_result
                    .as_ref()
                    .map(|e| self.plan(e, here).map(boxed))
                    .transpose()?,
            },
            ast::Expr::Cast {
                kind,
                expr: inner,
                data_type,
                array,
                format,
            } => {
                if !matches!(kind, CastKind::Cast | CastKind::DoubleColon)
                    || *array
                    || format.is_some()
                {
                    return Err(unsupported(format!("{kind:?}"), expr, here));
                }
                let to = cast_type(data_type)
                    .ok_or_else(|| unsupported(format!("a cast to {data_type}"), expr, here))?;
                Expr::Cast(boxed(self.plan(inner, here)?), to)
            }
            ast::Expr::Substring {
                expr: inner,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![self.plan(inner, here)?];
                args.push(match substring_from {
                    Some(from) => self.plan(from, here)?,
                    None => Expr::Literal(Datum::Int(1)),
                });
                if let Some(length) = substring_for {
                    args.push(self.plan(length, here)?);
                }
                Expr::Call(Function::Substr, args)
            }
            ast::Expr::Trim {
                expr: inner,
                trim_where,
                trim_what,
                trim_characters,
            } => {
                if trim_what.is_some() || trim_characters.is_some() {
                    return Err(unsupported("TRIM of given characters", expr, here));
                }
                let function = match trim_where {
                    None | Some(ast::TrimWhereField::Both) => Function::Trim,
                    Some(ast::TrimWhereField::Leading) => Function::LTrim,
                    Some(ast::TrimWhereField::Trailing) => Function::RTrim,
                };
                Expr::Call(function, vec![self.plan(inner, here)?])
            }
            ast::Expr::Function(function) => self.function(function, here)?,
            ast::Expr::Subquery(_) | ast::Expr::InSubquery { .. } | ast::Expr::Exists { .. } => {
                return Err(unsupported("a subquery", expr, here));
            }
            other => {
                return Err(unsupported(
                    format!("the expression {}", variant_name(other)),
                    expr,
                    here,
                ));
            }
        })
    }

    fn function(&mut self, function: &ast::Function, fallback: TextPosition) -> Planned {
        let here = at(function, fallback);
        let name = match function.name.0.as_slice() {
            [ObjectNamePart::Identifier(ident)] => folded(ident),
            _ => {
                return Err(unsupported(
                    format!("the function {}", function.name),
                    function,
                    here,
                ));
            }
        };
        if function.over.is_some() {
            return Err(unsupported("a window function (OVER)", function, here));
        }
        if function.filter.is_some() {
            return Err(unsupported("an aggregate FILTER", function, here));
        }
        if !function.within_group.is_empty() || function.null_treatment.is_some() {
            return Err(unsupported("WITHIN GROUP / NULL treatment", function, here));
        }
        if !matches!(function.parameters, FunctionArguments::None) {
            return Err(unsupported("function parameters", function, here));
        }
        let list = match &function.args {
            FunctionArguments::List(list) => list,
            FunctionArguments::None => {
                return Err(unsupported(format!("the function {name}"), function, here));
            }
            FunctionArguments::Subquery(_) => {
                return Err(unsupported("a subquery", function, here));
            }
        };
        if !list.clauses.is_empty() {
            return Err(unsupported(
                "a clause inside a function call",
                function,
                here,
            ));
        }
        let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
        let mut star = false;
        let mut args = Vec::new();
        for arg in &list.args {
            match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => args.push(e),
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => star = true,
                _ => {
                    return Err(unsupported(
                        "a named or qualified-wildcard argument",
                        function,
                        here,
                    ));
                }
            }
        }
        if let Some(kind) = aggregate_kind(&name, star) {
            if distinct {
                return Err(unsupported(format!("{name}(DISTINCT ...)"), function, here));
            }
            return self.aggregate(kind, &args, &name, here);
        }
        if distinct || star {
            return Err(unsupported(
                format!("{name} with DISTINCT or *"),
                function,
                here,
            ));
        }
        let (function_kind, arity) = scalar_function(&name)
            .ok_or_else(|| unsupported(format!("the function {name}"), function, here))?;
        if !arity.contains(&args.len()) {
            return Err(invalid(
                format!("{name} takes {arity:?} arguments, not {}", args.len()),
                here,
            ));
        }
        let args = args
            .iter()
            .map(|a| self.plan(a, here))
            .collect::<Result<_, _>>()?;
        Ok(Expr::Call(function_kind, args))
    }

    fn aggregate(
        &mut self,
        kind: AggregateKind,
        args: &[&ast::Expr],
        name: &str,
        here: TextPosition,
    ) -> Planned {
        if self.aggregates.is_none() {
            return Err(invalid(
                format!("aggregate {name} is not allowed in {}", self.clause),
                here,
            ));
        }
        if self.in_aggregate {
            return Err(invalid("aggregate calls cannot be nested", here));
        }
        let expected = usize::from(kind != AggregateKind::CountStar);
        if args.len() != expected {
            return Err(invalid(
                format!("{name} takes {expected} argument(s)"),
                here,
            ));
        }
        self.in_aggregate = true;
        let arg = args.first().map(|a| self.plan(a, here)).transpose();
        self.in_aggregate = false;
        let aggregate = Aggregate { kind, arg: arg? };
        let Some(aggregates) = self.aggregates.as_deref_mut() else {
            return Err(invalid("aggregates are not allowed here", here));
        };
        let index = match aggregates.iter().position(|a| *a == aggregate) {
            Some(index) => index,
            None => {
                aggregates.push(aggregate);
                aggregates.len() - 1
            }
        };
        Ok(Expr::Aggregate(index))
    }
}
