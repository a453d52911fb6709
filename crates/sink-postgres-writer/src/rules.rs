//! Declarative per-column validation (FINDINGS W-5): a row that breaks a rule never reaches the
//! target; it goes to the dead-letter table with the reason.
//!
//! `NULL` and unchanged (TOAST) values pass every rule: whether a column may be null is the
//! target table's business, and an unchanged value was checked when it was written.

use regex::Regex;
use sha3::{Digest, Keccak256};
use surefoot_core_model::Value;

use crate::ident::Ident;

/// A checksum a hex value must carry in the case of its letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HexChecksum {
    /// EIP-55 mixed-case checksum over 20-byte (40-digit) addresses: a letter is upper case
    /// exactly when the matching nibble of Keccak-256 of the lower-case digits is 8 or more.
    Eip55,
}

/// One check of one column.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Hexadecimal text.
    Hex {
        /// Whether the `0x` prefix is required (otherwise forbidden).
        prefix: bool,
        /// Exact number of digits, if fixed.
        digits: Option<usize>,
        /// A checksum to verify, if any.
        checksum: Option<HexChecksum>,
    },
    /// Text matching a regular expression (anchor it with `^...$` to match the whole value).
    Pattern(String),
    /// A number within bounds (inclusive); integers, floats and numerics.
    Range {
        /// Lower bound.
        min: Option<f64>,
        /// Upper bound.
        max: Option<f64>,
    },
    /// Text length in characters, or bytea length in bytes, within bounds (inclusive).
    Length {
        /// Shortest allowed.
        min: Option<usize>,
        /// Longest allowed.
        max: Option<usize>,
    },
}

/// A rule for a named column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnRule {
    /// The column checked.
    pub column: String,
    /// The check.
    pub rule: Rule,
}

impl ColumnRule {
    /// A rule for `column`.
    pub fn new(column: impl Into<String>, rule: Rule) -> Self {
        Self {
            column: column.into(),
            rule,
        }
    }

    /// Every problem with the rule itself, as `field: problem` relative to the rule.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(error) = Ident::parse(&self.column) {
            problems.push(format!("column: {error}"));
        }
        match &self.rule {
            Rule::Hex {
                digits, checksum, ..
            } => {
                if *digits == Some(0) {
                    problems.push("hex.digits: must be more than 0".to_owned());
                }
                if checksum.is_some() && digits.is_some_and(|d| d != 40) {
                    problems.push("hex.checksum: eip55 applies to 40 digits".to_owned());
                }
            }
            Rule::Pattern(pattern) => {
                if let Err(error) = Regex::new(pattern) {
                    problems.push(format!("pattern: {error}"));
                }
            }
            Rule::Range { min, max } => {
                let finite = [min, max].iter().all(|b| b.is_none_or(f64::is_finite));
                if !finite {
                    problems.push("range: bounds must be finite numbers".to_owned());
                } else if matches!((min, max), (Some(lo), Some(hi)) if lo > hi) {
                    problems.push("range: min must not exceed max".to_owned());
                }
            }
            Rule::Length { min, max } => {
                if matches!((min, max), (Some(lo), Some(hi)) if lo > hi) {
                    problems.push("length: min must not exceed max".to_owned());
                }
            }
        }
        problems
    }
}

/// A rule ready to check values (its pattern compiled).
#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    column: String,
    rule: Rule,
    pattern: Option<Regex>,
}

impl CompiledRule {
    /// Compiles a rule that passed validation.
    pub(crate) fn compile(rule: &ColumnRule) -> Result<Self, regex::Error> {
        let pattern = match &rule.rule {
            Rule::Pattern(text) => Some(Regex::new(text)?),
            _ => None,
        };
        Ok(Self {
            column: rule.column.clone(),
            rule: rule.rule.clone(),
            pattern,
        })
    }

    /// The column checked.
    pub(crate) fn column(&self) -> &str {
        &self.column
    }

    /// `Err(reason)` when `value` breaks the rule.
    pub(crate) fn check(&self, value: &Value) -> Result<(), String> {
        if value.is_null() || value.is_unchanged() {
            return Ok(());
        }
        let outcome = match &self.rule {
            Rule::Hex {
                prefix,
                digits,
                checksum,
            } => check_hex(value, *prefix, *digits, *checksum),
            Rule::Pattern(text) => match (text_of(value), &self.pattern) {
                (Some(candidate), Some(regex)) if regex.is_match(candidate) => Ok(()),
                (Some(_), _) => Err(format!("does not match pattern `{text}`")),
                (None, _) => Err("is not text".to_owned()),
            },
            Rule::Range { min, max } => check_range(value, *min, *max),
            Rule::Length { min, max } => check_length(value, *min, *max),
        };
        outcome.map_err(|reason| format!("column `{}` {reason}", self.column))
    }
}

fn text_of(value: &Value) -> Option<&str> {
    match value {
        Value::Text(text) => Some(text),
        Value::Other { text, .. } => Some(text),
        _ => None,
    }
}

fn check_hex(
    value: &Value,
    prefix: bool,
    digits: Option<usize>,
    checksum: Option<HexChecksum>,
) -> Result<(), String> {
    let text = text_of(value).ok_or("is not text")?;
    let body = match (prefix, text.strip_prefix("0x")) {
        (true, Some(body)) => body,
        (true, None) => return Err("lacks the 0x prefix".to_owned()),
        (false, Some(_)) => return Err("has a 0x prefix, which is not allowed".to_owned()),
        (false, None) => text,
    };
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("is not hexadecimal".to_owned());
    }
    if let Some(expected) = digits.filter(|d| *d != body.len()) {
        return Err(format!(
            "has {} hex digits, expected {expected}",
            body.len()
        ));
    }
    match checksum {
        Some(HexChecksum::Eip55) if !eip55_valid(body) => {
            Err("fails its EIP-55 checksum".to_owned())
        }
        _ => Ok(()),
    }
}

fn eip55_valid(body: &str) -> bool {
    if body.len() != 40 {
        return false;
    }
    let hash = Keccak256::digest(body.to_ascii_lowercase().as_bytes());
    body.bytes().enumerate().all(|(i, digit)| {
        let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
        match digit {
            b'a'..=b'f' => nibble < 8,
            b'A'..=b'F' => nibble >= 8,
            _ => true,
        }
    })
}

fn number_of(value: &Value) -> Option<f64> {
    match value {
        Value::Int16(n) => Some(f64::from(*n)),
        Value::Int32(n) => Some(f64::from(*n)),
        // Precision past 2^53 does not matter for a bounds check of configured f64 bounds.
        #[allow(clippy::cast_precision_loss)]
        Value::Int64(n) => Some(*n as f64),
        Value::Float32(n) => Some(f64::from(*n)),
        Value::Float64(n) => Some(*n),
        Value::Numeric(n) => n.as_str().parse().ok(),
        _ => None,
    }
}

fn check_range(value: &Value, min: Option<f64>, max: Option<f64>) -> Result<(), String> {
    let number = number_of(value).ok_or("is not a number")?;
    if number.is_nan() {
        return Err("is NaN".to_owned());
    }
    if let Some(lo) = min.filter(|lo| number < *lo) {
        return Err(format!("is {number}, below the minimum {lo}"));
    }
    if let Some(hi) = max.filter(|hi| number > *hi) {
        return Err(format!("is {number}, above the maximum {hi}"));
    }
    Ok(())
}

fn check_length(value: &Value, min: Option<usize>, max: Option<usize>) -> Result<(), String> {
    let length = match value {
        Value::Text(text) => text.chars().count(),
        Value::Bytes(bytes) => bytes.len(),
        other => text_of(other).ok_or("has no length")?.chars().count(),
    };
    if let Some(lo) = min.filter(|lo| length < *lo) {
        return Err(format!("has length {length}, below the minimum {lo}"));
    }
    if let Some(hi) = max.filter(|hi| length > *hi) {
        return Err(format!("has length {length}, above the maximum {hi}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(rule: Rule) -> CompiledRule {
        CompiledRule::compile(&ColumnRule::new("c", rule)).unwrap()
    }

    fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    #[test]
    fn w_5_hex_with_eip55_checksum() {
        let hex = rule(Rule::Hex {
            prefix: true,
            digits: Some(40),
            checksum: Some(HexChecksum::Eip55),
        });
        // The EIP-55 specification's own example addresses.
        assert!(
            hex.check(&text("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"))
                .is_ok()
        );
        assert!(
            hex.check(&text("0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"))
                .is_ok()
        );
        let wrong_case = hex.check(&text("0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed"));
        assert!(wrong_case.unwrap_err().contains("EIP-55"));
        assert!(
            hex.check(&text("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"))
                .is_err()
        );
        assert!(
            hex.check(&text("0x5aAe"))
                .unwrap_err()
                .contains("4 hex digits")
        );
        assert!(hex.check(&text("0xZZ")).is_err());
        assert!(hex.check(&Value::Null).is_ok());
        assert!(hex.check(&Value::Int32(1)).is_err());
        let bare = rule(Rule::Hex {
            prefix: false,
            digits: None,
            checksum: None,
        });
        assert!(bare.check(&text("00ff")).is_ok());
        assert!(bare.check(&text("0x00ff")).is_err());
    }

    #[test]
    fn w_5_pattern_range_and_length() {
        let pattern = rule(Rule::Pattern("^[a-z]+$".into()));
        assert!(pattern.check(&text("abc")).is_ok());
        assert!(pattern.check(&text("ab1")).unwrap_err().contains("pattern"));
        assert!(pattern.check(&Value::Bool(true)).is_err());
        let range = rule(Rule::Range {
            min: Some(0.0),
            max: Some(10.0),
        });
        assert!(range.check(&Value::Int64(10)).is_ok());
        assert!(
            range
                .check(&Value::Int16(-1))
                .unwrap_err()
                .contains("minimum")
        );
        assert!(
            range
                .check(&Value::Float64(10.5))
                .unwrap_err()
                .contains("maximum")
        );
        assert!(range.check(&Value::Numeric("5.5".parse().unwrap())).is_ok());
        assert!(range.check(&Value::Float32(f32::NAN)).is_err());
        assert!(range.check(&text("x")).is_err());
        let length = rule(Rule::Length {
            min: Some(2),
            max: Some(3),
        });
        assert!(length.check(&text("äbc")).is_ok());
        assert!(length.check(&Value::Bytes(vec![1])).is_err());
        assert!(length.check(&text("abcd")).unwrap_err().contains("maximum"));
        assert!(length.check(&Value::Int32(1)).is_err());
        assert!(length.check(&Value::Unchanged).is_ok());
    }

    #[test]
    fn w_10_broken_rules_are_reported() {
        let bad = [
            ColumnRule::new("", Rule::Pattern("(".into())),
            ColumnRule::new(
                "c",
                Rule::Range {
                    min: Some(2.0),
                    max: Some(1.0),
                },
            ),
            ColumnRule::new(
                "c",
                Rule::Length {
                    min: Some(5),
                    max: Some(1),
                },
            ),
            ColumnRule::new(
                "c",
                Rule::Hex {
                    prefix: true,
                    digits: Some(0),
                    checksum: Some(HexChecksum::Eip55),
                },
            ),
        ];
        let problems: Vec<String> = bad.iter().flat_map(ColumnRule::problems).collect();
        assert_eq!(problems.len(), 6, "{problems:?}");
    }
}
