//! The words of the subset: aggregate and scalar function names, operators, literals, casts.

use sqlparser::ast::{self, BinaryOperator, DataType};

use crate::datum::Datum;
use crate::error::{QueryError, TextPosition};
use crate::expr::{BinaryOp, CastType, Function};
use crate::plan::AggregateKind;
use crate::plan::refuse::{unsupported, variant_name};

pub(crate) fn aggregate_kind(name: &str, star: bool) -> Option<AggregateKind> {
    Some(match (name, star) {
        ("count", true) => AggregateKind::CountStar,
        ("count", false) => AggregateKind::Count,
        ("sum", false) => AggregateKind::Sum,
        ("avg", false) => AggregateKind::Avg,
        ("min", false) => AggregateKind::Min,
        ("max", false) => AggregateKind::Max,
        _ => return None,
    })
}

pub(crate) fn scalar_function(name: &str) -> Option<(Function, std::ops::RangeInclusive<usize>)> {
    Some(match name {
        "lower" => (Function::Lower, 1..=1),
        "upper" => (Function::Upper, 1..=1),
        "length" | "char_length" | "character_length" => (Function::Length, 1..=1),
        "btrim" => (Function::Trim, 1..=1),
        "ltrim" => (Function::LTrim, 1..=1),
        "rtrim" => (Function::RTrim, 1..=1),
        "substr" | "substring" => (Function::Substr, 2..=3),
        "replace" => (Function::Replace, 3..=3),
        "concat" => (Function::Concat, 1..=100),
        "abs" => (Function::Abs, 1..=1),
        "nullif" => (Function::NullIf, 2..=2),
        "coalesce" => (Function::Coalesce, 1..=100),
        _ => return None,
    })
}

pub(crate) fn literal(
    value: &ast::Value,
    node: &ast::Expr,
    here: TextPosition,
) -> Result<Datum, QueryError> {
    Ok(match value {
        ast::Value::Number(text, _) => match text.parse::<i64>() {
            Ok(int) => Datum::Int(int),
            Err(_) => Datum::Numeric(text.as_str().into()),
        },
        ast::Value::SingleQuotedString(text) => Datum::Text(text.as_str().into()),
        ast::Value::Boolean(b) => Datum::Bool(*b),
        ast::Value::Null => Datum::Null,
        other => {
            return Err(unsupported(
                format!("the literal {}", variant_name(other)),
                node,
                here,
            ));
        }
    })
}

pub(crate) fn binary_op(op: &BinaryOperator) -> Option<BinaryOp> {
    Some(match op {
        BinaryOperator::Plus => BinaryOp::Add,
        BinaryOperator::Minus => BinaryOp::Sub,
        BinaryOperator::Multiply => BinaryOp::Mul,
        BinaryOperator::Divide => BinaryOp::Div,
        BinaryOperator::Modulo => BinaryOp::Mod,
        BinaryOperator::StringConcat => BinaryOp::Concat,
        BinaryOperator::Eq => BinaryOp::Eq,
        BinaryOperator::NotEq => BinaryOp::NotEq,
        BinaryOperator::Lt => BinaryOp::Lt,
        BinaryOperator::LtEq => BinaryOp::LtEq,
        BinaryOperator::Gt => BinaryOp::Gt,
        BinaryOperator::GtEq => BinaryOp::GtEq,
        BinaryOperator::And => BinaryOp::And,
        BinaryOperator::Or => BinaryOp::Or,
        _ => return None,
    })
}

pub(crate) fn cast_type(data_type: &DataType) -> Option<CastType> {
    let text = data_type.to_string().to_lowercase();
    let base = text.split('(').next().unwrap_or("").trim();
    Some(match base {
        "int" | "integer" | "bigint" | "smallint" | "int2" | "int4" | "int8" => CastType::Int,
        "real" | "float" | "double" | "double precision" | "float4" | "float8" => CastType::Float,
        "numeric" | "decimal" => CastType::Numeric,
        "text" | "varchar" | "character varying" | "char" | "character" | "string" => {
            CastType::Text
        }
        "boolean" | "bool" => CastType::Bool,
        _ => return None,
    })
}

/// True when `expr` is a plain column reference.
pub(crate) fn is_column(expr: &ast::Expr) -> bool {
    match expr {
        ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_) => true,
        ast::Expr::Nested(inner) => is_column(inner),
        _ => false,
    }
}
