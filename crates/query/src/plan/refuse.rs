//! Refusing what the subset does not support, with the construct's position.

use sqlparser::ast::Spanned;
use sqlparser::tokenizer::Span;

use crate::error::{QueryError, TextPosition};

/// The start of `span`, or `fallback` when the parser recorded none (line 0).
pub(crate) fn position(span: Span, fallback: TextPosition) -> TextPosition {
    if span.start.line == 0 {
        fallback
    } else {
        TextPosition {
            line: span.start.line,
            column: span.start.column,
        }
    }
}

/// The start of `node`, or `fallback`.
pub(crate) fn at(node: &impl Spanned, fallback: TextPosition) -> TextPosition {
    position(node.span(), fallback)
}

/// "`construct` is not supported", at `node`.
pub(crate) fn unsupported(
    construct: impl Into<String>,
    node: &impl Spanned,
    fallback: TextPosition,
) -> QueryError {
    QueryError::Unsupported {
        construct: construct.into(),
        at: at(node, fallback),
    }
}

/// An invalid use, at `at`.
pub(crate) fn invalid(message: impl Into<String>, at: TextPosition) -> QueryError {
    QueryError::Invalid {
        message: message.into(),
        at,
    }
}

/// The name of an enum variant from its debug text, e.g. `Exists` for `Exists { .. }`.
pub(crate) fn variant_name(node: &impl std::fmt::Debug) -> String {
    let text = format!("{node:?}");
    text.split(|c: char| !c.is_alphanumeric() && c != '_')
        .next()
        .unwrap_or("expression")
        .to_owned()
}
