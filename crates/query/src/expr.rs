//! Scalar expressions of the logical plan, and their evaluation with SQL's NULL semantics.

use crate::datum::Datum;
use crate::error::EvalError;
use crate::ops;

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `||`
    Concat,
    /// `=`
    Eq,
    /// `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
    /// `AND`
    And,
    /// `OR`
    Or,
}

/// A scalar function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `lower(text)`
    Lower,
    /// `upper(text)`
    Upper,
    /// `length(text)`, `char_length(text)`
    Length,
    /// `btrim(text)`, `trim(text)`
    Trim,
    /// `ltrim(text)`
    LTrim,
    /// `rtrim(text)`
    RTrim,
    /// `substr(text, from [, for])`, `substring(text from .. for ..)`
    Substr,
    /// `replace(text, from, to)`
    Replace,
    /// `concat(...)`: NULLs count as empty.
    Concat,
    /// `abs(number)`
    Abs,
    /// `nullif(a, b)`
    NullIf,
    /// `coalesce(...)`
    Coalesce,
}

/// A type a cast converts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CastType {
    /// Integer types.
    Int,
    /// `real`, `double precision`.
    Float,
    /// `numeric`, `decimal`.
    Numeric,
    /// Text types.
    Text,
    /// `boolean`.
    Bool,
}

/// A scalar expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A column of input table `table` (index in the FROM list), at `column` in the columns
    /// the query keeps of it.
    Column {
        /// The table's index in the FROM list.
        table: usize,
        /// The column's index among the kept columns.
        column: usize,
    },
    /// The `n`th GROUP BY expression (after grouping).
    GroupKey(usize),
    /// The `n`th aggregate (after grouping).
    Aggregate(usize),
    /// A constant.
    Literal(Datum),
    /// `a op b`.
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `NOT a`.
    Not(Box<Expr>),
    /// `-a`.
    Negate(Box<Expr>),
    /// `a IS [NOT] NULL`.
    IsNull {
        /// The operand.
        expr: Box<Expr>,
        /// `IS NOT NULL`.
        negated: bool,
    },
    /// `a IS [NOT] DISTINCT FROM b`.
    IsDistinct {
        /// Left operand.
        left: Box<Expr>,
        /// Right operand.
        right: Box<Expr>,
        /// `IS NOT DISTINCT FROM`.
        negated: bool,
    },
    /// `a [NOT] IN (list)`.
    InList {
        /// The operand.
        expr: Box<Expr>,
        /// The list.
        list: Vec<Expr>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `a [NOT] [I]LIKE pattern`.
    Like {
        /// The operand.
        expr: Box<Expr>,
        /// The pattern.
        pattern: Box<Expr>,
        /// `NOT LIKE`.
        negated: bool,
        /// `ILIKE`.
        case_insensitive: bool,
    },
    /// `CASE [operand] WHEN .. THEN .. [ELSE ..] END`.
    Case {
        /// The operand of a simple CASE.
        operand: Option<Box<Expr>>,
        /// `(when, then)` pairs.
        branches: Vec<(Expr, Expr)>,
        /// `ELSE`, NULL when absent.
        otherwise: Option<Box<Expr>>,
    },
    /// `CAST(a AS type)`, `a::type`.
    Cast(Box<Expr>, CastType),
    /// A function call.
    Call(Function, Vec<Expr>),
}

/// Where an expression finds its column, group-key and aggregate values.
pub(crate) trait Context {
    /// The value of a column.
    fn column(&self, table: usize, column: usize) -> &Datum;
    /// The value of a GROUP BY expression.
    fn group_key(&self, index: usize) -> &Datum;
    /// The value of an aggregate.
    fn aggregate(&self, index: usize) -> &Datum;
}

impl Expr {
    /// Evaluates the expression.
    pub(crate) fn eval(&self, ctx: &dyn Context) -> Result<Datum, EvalError> {
        Ok(match self {
            Expr::Column { table, column } => ctx.column(*table, *column).clone(),
            Expr::GroupKey(index) => ctx.group_key(*index).clone(),
            Expr::Aggregate(index) => ctx.aggregate(*index).clone(),
            Expr::Literal(datum) => datum.clone(),
            Expr::Binary(BinaryOp::And, left, right) => {
                let left = ops::truth(&left.eval(ctx)?)?;
                if left == Some(false) {
                    return Ok(Datum::Bool(false));
                }
                ops::and(left, ops::truth(&right.eval(ctx)?)?)
            }
            Expr::Binary(BinaryOp::Or, left, right) => {
                let left = ops::truth(&left.eval(ctx)?)?;
                if left == Some(true) {
                    return Ok(Datum::Bool(true));
                }
                ops::or(left, ops::truth(&right.eval(ctx)?)?)
            }
            Expr::Binary(op, left, right) => match (left.in_place(ctx), right.in_place(ctx)) {
                // Columns and literals are read where they are, not copied out.
                (Some(a), Some(b)) => ops::binary(*op, a, b)?,
                _ => ops::binary(*op, &left.eval(ctx)?, &right.eval(ctx)?)?,
            },
            Expr::Not(inner) => match ops::truth(&inner.eval(ctx)?)? {
                Some(b) => Datum::Bool(!b),
                None => Datum::Null,
            },
            Expr::Negate(inner) => ops::negate(&inner.eval(ctx)?)?,
            Expr::IsNull { expr, negated } => Datum::Bool(expr.eval(ctx)?.is_null() != *negated),
            Expr::IsDistinct {
                left,
                right,
                negated,
            } => {
                let (l, r) = (left.eval(ctx)?, right.eval(ctx)?);
                let same = match (l.is_null(), r.is_null()) {
                    (true, true) => true,
                    (false, false) => ops::compare(&l, &r)? == std::cmp::Ordering::Equal,
                    _ => false,
                };
                Datum::Bool(same == *negated)
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => in_list(&expr.eval(ctx)?, list, *negated, ctx)?,
            Expr::Like {
                expr,
                pattern,
                negated,
                case_insensitive,
            } => match (expr.eval(ctx)?, pattern.eval(ctx)?) {
                (Datum::Null, _) | (_, Datum::Null) => Datum::Null,
                (Datum::Text(text), Datum::Text(pattern)) => {
                    Datum::Bool(ops::like(&text, &pattern, *case_insensitive) != *negated)
                }
                (a, b) => return Err(ops::type_error("LIKE", &a, &b)),
            },
            Expr::Case {
                operand,
                branches,
                otherwise,
            } => case(operand.as_deref(), branches, otherwise.as_deref(), ctx)?,
            Expr::Cast(inner, to) => ops::cast(&inner.eval(ctx)?, *to)?,
            Expr::Call(Function::Coalesce, args) => {
                for arg in args {
                    let value = arg.eval(ctx)?;
                    if !value.is_null() {
                        return Ok(value);
                    }
                }
                Datum::Null
            }
            Expr::Call(function, args) => {
                let values = args
                    .iter()
                    .map(|arg| arg.eval(ctx))
                    .collect::<Result<Vec<_>, _>>()?;
                ops::call(*function, &values)?
            }
        })
    }
}

impl Expr {
    /// The value of a column, group key, aggregate or literal, borrowed; `None` for an
    /// expression that computes its value.
    fn in_place<'a>(&'a self, ctx: &'a dyn Context) -> Option<&'a Datum> {
        match self {
            Expr::Column { table, column } => Some(ctx.column(*table, *column)),
            Expr::GroupKey(index) => Some(ctx.group_key(*index)),
            Expr::Aggregate(index) => Some(ctx.aggregate(*index)),
            Expr::Literal(datum) => Some(datum),
            _ => None,
        }
    }

    /// The direct sub-expressions, mutably.
    pub(crate) fn children_mut(&mut self) -> Vec<&mut Expr> {
        match self {
            Expr::Column { .. } | Expr::GroupKey(_) | Expr::Aggregate(_) | Expr::Literal(_) => {
                vec![]
            }
            Expr::Binary(_, a, b) => vec![a, b],
            Expr::Not(a) | Expr::Negate(a) | Expr::Cast(a, _) => vec![a],
            Expr::IsNull { expr, .. } => vec![expr],
            Expr::IsDistinct { left, right, .. } => vec![left, right],
            Expr::InList { expr, list, .. } => std::iter::once(&mut **expr)
                .chain(list.iter_mut())
                .collect(),
            Expr::Like { expr, pattern, .. } => vec![expr, pattern],
            Expr::Case {
                operand,
                branches,
                otherwise,
            } => operand
                .iter_mut()
                .map(|e| &mut **e)
                .chain(branches.iter_mut().flat_map(|(w, t)| [w, t]))
                .chain(otherwise.iter_mut().map(|e| &mut **e))
                .collect(),
            Expr::Call(_, args) => args.iter_mut().collect(),
        }
    }
}

fn in_list(
    value: &Datum,
    list: &[Expr],
    negated: bool,
    ctx: &dyn Context,
) -> Result<Datum, EvalError> {
    if value.is_null() {
        return Ok(Datum::Null);
    }
    let mut saw_null = false;
    for item in list {
        let item = item.eval(ctx)?;
        if item.is_null() {
            saw_null = true;
        } else if ops::compare(value, &item)? == std::cmp::Ordering::Equal {
            return Ok(Datum::Bool(!negated));
        }
    }
    Ok(if saw_null {
        Datum::Null
    } else {
        Datum::Bool(negated)
    })
}

fn case(
    operand: Option<&Expr>,
    branches: &[(Expr, Expr)],
    otherwise: Option<&Expr>,
    ctx: &dyn Context,
) -> Result<Datum, EvalError> {
    let operand = operand.map(|e| e.eval(ctx)).transpose()?;
    for (when, then) in branches {
        let when = when.eval(ctx)?;
        let hit = match &operand {
            Some(value) => {
                !value.is_null()
                    && !when.is_null()
                    && ops::compare(value, &when)? == std::cmp::Ordering::Equal
            }
            None => ops::truth(&when)? == Some(true),
        };
        if hit {
            return then.eval(ctx);
        }
    }
    otherwise.map_or(Ok(Datum::Null), |e| e.eval(ctx))
}
