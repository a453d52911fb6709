//! Operators, casts and functions on [`Datum`]s, following PostgreSQL where the subset reaches.

use std::cmp::Ordering;

use crate::datum::Datum;
use crate::error::{EvalError, expr_error};
use crate::expr::{BinaryOp, CastType, Function};

pub(crate) fn type_error(what: &str, a: &Datum, b: &Datum) -> EvalError {
    expr_error(format!("{what} cannot combine {a:?} and {b:?}"))
}

/// The truth value of a condition: NULL is `None`.
pub(crate) fn truth(value: &Datum) -> Result<Option<bool>, EvalError> {
    match value {
        Datum::Null => Ok(None),
        Datum::Bool(b) => Ok(Some(*b)),
        other => Err(expr_error(format!("{other:?} is not a boolean"))),
    }
}

fn bool_datum(value: Option<bool>) -> Datum {
    value.map_or(Datum::Null, Datum::Bool)
}

/// Three-valued AND.
pub(crate) fn and(a: Option<bool>, b: Option<bool>) -> Datum {
    bool_datum(match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    })
}

/// Three-valued OR.
pub(crate) fn or(a: Option<bool>, b: Option<bool>) -> Datum {
    bool_datum(match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    })
}

/// Compares two non-NULL values of comparable kinds.
pub(crate) fn compare(a: &Datum, b: &Datum) -> Result<Ordering, EvalError> {
    let comparable = matches!(
        (a, b),
        (Datum::Bool(_), Datum::Bool(_))
            | (Datum::Text(_), Datum::Text(_))
            | (Datum::Opaque(_), Datum::Opaque(_))
    ) || (a.as_f64().is_some() && b.as_f64().is_some());
    if comparable {
        Ok(a.total_cmp(b))
    } else {
        Err(type_error("comparison", a, b))
    }
}

pub(crate) fn binary(op: BinaryOp, a: &Datum, b: &Datum) -> Result<Datum, EvalError> {
    if a.is_null() || b.is_null() {
        return Ok(Datum::Null);
    }
    let ordering = |test: fn(Ordering) -> bool| match (a, b) {
        // The common case, without the kind checks of `compare`.
        (Datum::Int(x), Datum::Int(y)) => Ok(Datum::Bool(test(x.cmp(y)))),
        _ => compare(a, b).map(|o| Datum::Bool(test(o))),
    };
    match op {
        BinaryOp::Eq => ordering(Ordering::is_eq),
        BinaryOp::NotEq => ordering(Ordering::is_ne),
        BinaryOp::Lt => ordering(Ordering::is_lt),
        BinaryOp::LtEq => ordering(Ordering::is_le),
        BinaryOp::Gt => ordering(Ordering::is_gt),
        BinaryOp::GtEq => ordering(Ordering::is_ge),
        BinaryOp::Concat => Ok(Datum::Text(format!("{}{}", text_of(a), text_of(b)).into())),
        BinaryOp::And | BinaryOp::Or => Err(expr_error("AND/OR evaluated as arithmetic")),
        arithmetic => arith(arithmetic, a, b),
    }
}

fn arith(op: BinaryOp, a: &Datum, b: &Datum) -> Result<Datum, EvalError> {
    if let (Datum::Int(x), Datum::Int(y)) = (a, b) {
        let (x, y) = (*x, *y);
        if matches!(op, BinaryOp::Div | BinaryOp::Mod) && y == 0 {
            return Err(expr_error("division by zero"));
        }
        let result = match op {
            BinaryOp::Add => x.checked_add(y),
            BinaryOp::Sub => x.checked_sub(y),
            BinaryOp::Mul => x.checked_mul(y),
            BinaryOp::Div => x.checked_div(y),
            _ => x.checked_rem(y),
        };
        return result
            .map(Datum::Int)
            .ok_or_else(|| expr_error("integer out of range"));
    }
    let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
        return Err(type_error("arithmetic", a, b));
    };
    if matches!(op, BinaryOp::Div | BinaryOp::Mod) && y == 0.0 {
        return Err(expr_error("division by zero"));
    }
    let result = match op {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
        BinaryOp::Div => x / y,
        _ => x % y,
    };
    let numeric = matches!(a, Datum::Numeric(_)) || matches!(b, Datum::Numeric(_));
    let float = matches!(a, Datum::Float(_)) || matches!(b, Datum::Float(_));
    Ok(if numeric && !float {
        Datum::Numeric(result.to_string().into())
    } else {
        Datum::Float(result)
    })
}

pub(crate) fn negate(value: &Datum) -> Result<Datum, EvalError> {
    match value {
        Datum::Null => Ok(Datum::Null),
        Datum::Int(i) => i
            .checked_neg()
            .map(Datum::Int)
            .ok_or_else(|| expr_error("integer out of range")),
        Datum::Float(f) => Ok(Datum::Float(-f)),
        Datum::Numeric(text) => Ok(Datum::Numeric(match text.strip_prefix('-') {
            Some(positive) => positive.into(),
            None => format!("-{text}").into(),
        })),
        other => Err(expr_error(format!("cannot negate {other:?}"))),
    }
}

/// The text form of a value, as PostgreSQL's output function writes it (for `||` and casts).
pub(crate) fn text_of(value: &Datum) -> String {
    match value {
        Datum::Null => String::new(),
        Datum::Bool(true) => "true".into(),
        Datum::Bool(false) => "false".into(),
        Datum::Int(i) => i.to_string(),
        Datum::Float(f) => f.to_string(),
        Datum::Numeric(text) | Datum::Text(text) => text.to_string(),
        Datum::Opaque(opaque) => opaque.0.clone(),
    }
}

pub(crate) fn cast(value: &Datum, to: CastType) -> Result<Datum, EvalError> {
    let fail = || expr_error(format!("cannot cast {value:?} to {to:?}"));
    Ok(match (value, to) {
        (Datum::Null, _) => Datum::Null,
        (Datum::Text(text), CastType::Int) => Datum::Int(text.trim().parse().map_err(|_| fail())?),
        (Datum::Bool(b), CastType::Int) => Datum::Int(i64::from(*b)),
        (Datum::Int(_), CastType::Int) => value.clone(),
        (Datum::Float(f), CastType::Int) => float_to_int(f.round_ties_even()).ok_or_else(fail)?,
        (Datum::Numeric(_), CastType::Int) => {
            float_to_int(value.as_f64().ok_or_else(fail)?.round()).ok_or_else(fail)?
        }
        (Datum::Text(text), CastType::Float) => {
            Datum::Float(text.trim().parse().map_err(|_| fail())?)
        }
        (_, CastType::Float) => Datum::Float(value.as_f64().ok_or_else(fail)?),
        (Datum::Text(text), CastType::Numeric) => {
            let trimmed = text.trim();
            trimmed.parse::<f64>().map_err(|_| fail())?;
            Datum::Numeric(trimmed.into())
        }
        (Datum::Int(_) | Datum::Float(_) | Datum::Numeric(_), CastType::Numeric) => {
            Datum::Numeric(text_of(value).into())
        }
        (_, CastType::Text) => Datum::Text(text_of(value).into()),
        (Datum::Bool(_), CastType::Bool) => value.clone(),
        (Datum::Int(i), CastType::Bool) => Datum::Bool(*i != 0),
        (Datum::Text(text), CastType::Bool) => match text.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "yes" | "y" | "on" | "1" => Datum::Bool(true),
            "f" | "false" | "no" | "n" | "off" | "0" => Datum::Bool(false),
            _ => return Err(fail()),
        },
        _ => return Err(fail()),
    })
}

fn float_to_int(value: f64) -> Option<Datum> {
    (value.is_finite() && value.abs() < 9.2e18).then_some(Datum::Int(value as i64))
}

fn text_arg(values: &[Datum], index: usize) -> Result<&str, EvalError> {
    match values.get(index) {
        Some(Datum::Text(text)) => Ok(text),
        other => Err(expr_error(format!(
            "argument {} must be text: {other:?}",
            index + 1
        ))),
    }
}

fn int_arg(values: &[Datum], index: usize) -> Result<i64, EvalError> {
    match values.get(index) {
        Some(Datum::Int(int)) => Ok(*int),
        other => Err(expr_error(format!(
            "argument {} must be an integer: {other:?}",
            index + 1
        ))),
    }
}

pub(crate) fn call(function: Function, values: &[Datum]) -> Result<Datum, EvalError> {
    if function == Function::Concat {
        let text: String = values.iter().map(text_of).collect();
        return Ok(Datum::Text(text.into()));
    }
    if function == Function::NullIf {
        let [a, b] = values else {
            return Err(expr_error("nullif takes two arguments"));
        };
        let equal = !a.is_null() && !b.is_null() && compare(a, b)? == Ordering::Equal;
        return Ok(if equal { Datum::Null } else { a.clone() });
    }
    if values.iter().any(Datum::is_null) {
        return Ok(Datum::Null);
    }
    let text = |s: String| Ok(Datum::Text(s.into()));
    match function {
        Function::Lower => text(text_arg(values, 0)?.to_lowercase()),
        Function::Upper => text(text_arg(values, 0)?.to_uppercase()),
        Function::Length => Ok(Datum::Int(text_arg(values, 0)?.chars().count() as i64)),
        Function::Trim => text(text_arg(values, 0)?.trim_matches(' ').to_owned()),
        Function::LTrim => text(text_arg(values, 0)?.trim_start_matches(' ').to_owned()),
        Function::RTrim => text(text_arg(values, 0)?.trim_end_matches(' ').to_owned()),
        Function::Replace => {
            let from = text_arg(values, 1)?;
            let source = text_arg(values, 0)?;
            if from.is_empty() {
                return text(source.to_owned());
            }
            text(source.replace(from, text_arg(values, 2)?))
        }
        Function::Substr => substr(
            text_arg(values, 0)?,
            int_arg(values, 1)?,
            values.get(2).map(|_| int_arg(values, 2)).transpose()?,
        ),
        Function::Abs => match values.first().unwrap_or(&Datum::Null) {
            Datum::Int(i) => i
                .checked_abs()
                .map(Datum::Int)
                .ok_or_else(|| expr_error("integer out of range")),
            Datum::Float(f) => Ok(Datum::Float(f.abs())),
            Datum::Numeric(n) => Ok(Datum::Numeric(n.trim_start_matches('-').into())),
            other => Err(expr_error(format!("abs of {other:?}"))),
        },
        Function::Concat | Function::NullIf | Function::Coalesce => {
            Err(expr_error("function evaluated out of place"))
        }
    }
}

/// PostgreSQL's `substr`: 1-based start, which may be below 1; a negative length is an error.
fn substr(text: &str, start: i64, length: Option<i64>) -> Result<Datum, EvalError> {
    let end = match length {
        Some(length) if length < 0 => return Err(expr_error("negative substring length")),
        Some(length) => start.saturating_add(length),
        None => i64::MAX,
    };
    let from = start.max(1);
    let taken: String = text
        .chars()
        .enumerate()
        .filter(|(i, _)| {
            let position = *i as i64 + 1;
            position >= from && position < end
        })
        .map(|(_, c)| c)
        .collect();
    Ok(Datum::Text(taken.into()))
}

/// One element of a LIKE pattern.
#[derive(Clone, Copy, PartialEq)]
enum Piece {
    /// `%`: any run of characters.
    Any,
    /// `_`: one character.
    One,
    /// A literal character (escaped with `\\` or plain).
    Char(char),
}

/// SQL LIKE with `%`, `_` and the default escape `\\`, in time O(text × pattern) at worst.
pub(crate) fn like(text: &str, pattern: &str, case_insensitive: bool) -> bool {
    let (text, pattern) = if case_insensitive {
        (text.to_lowercase(), pattern.to_lowercase())
    } else {
        (text.to_owned(), pattern.to_owned())
    };
    let text: Vec<char> = text.chars().collect();
    let mut pieces = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        pieces.push(match c {
            '%' => Piece::Any,
            '_' => Piece::One,
            '\\' => Piece::Char(chars.next().unwrap_or('\\')),
            other => Piece::Char(other),
        });
    }
    matches(&text, &pieces)
}

/// Greedy wildcard matching with backtracking to the last `%` only.
fn matches(text: &[char], pieces: &[Piece]) -> bool {
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pieces.get(p) {
            Some(Piece::Any) => {
                star = Some((p, t));
                p += 1;
            }
            Some(Piece::One) => {
                t += 1;
                p += 1;
            }
            Some(Piece::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pieces[p..].iter().all(|piece| *piece == Piece::Any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_matches_like_postgres() {
        assert!(like("abc", "a%", false));
        assert!(like("abc", "_b_", false));
        assert!(!like("abc", "_b", false));
        assert!(like("a%c", "a\\%c", false));
        assert!(!like("abc", "a\\%c", false));
        assert!(like("ABC", "a%", true));
        assert!(like("", "%", false));
        assert!(like("aXbXc", "%b%c", false));
        assert!(!like("ab", "a_b", false));
        let long = "a".repeat(2_000);
        assert!(
            !like(&long, "%a%a%a%a%a%a%a%a%b", false),
            "no exponential backtracking"
        );
    }

    #[test]
    fn substr_follows_postgres_bounds() {
        let s = |start, len| substr("hello", start, len).unwrap();
        assert_eq!(s(2, Some(3)), Datum::Text("ell".into()));
        assert_eq!(s(0, Some(2)), Datum::Text("h".into()));
        assert_eq!(s(-1, None), Datum::Text("hello".into()));
        assert!(substr("x", 1, Some(-1)).is_err());
    }
}
