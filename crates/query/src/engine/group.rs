//! Grouping: per group a row count and, per aggregate, what retracts exactly: counts and sums
//! for count/sum/avg, a multiset of values for min/max.

use std::collections::BTreeMap;

use crate::datum::{Datum, Tuple};
use crate::error::{EvalError, expr_error};
use crate::plan::{Aggregate, AggregateKind};

/// One aggregate's state in one group.
#[derive(Debug, Clone)]
enum AggState {
    /// count(*) and count(x): the number of (non-NULL) values.
    Count(i64),
    /// sum and avg: the sum of the non-NULL values and their number.
    Sum {
        int: i128,
        float: f64,
        floats: i64,
        numerics: i64,
        count: i64,
    },
    /// min and max: every non-NULL value with its multiplicity.
    Values(BTreeMap<Datum, i64>),
}

/// One group.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// Input rows in the group.
    pub(crate) rows: i64,
    states: Vec<AggState>,
    /// The group's result row as of the last batch, if it has one.
    pub(crate) row: Option<Tuple>,
    /// Whether the batch in progress touched the group.
    pub(crate) touched: bool,
}

impl Group {
    pub(crate) fn new(aggregates: &[Aggregate]) -> Self {
        let states = aggregates
            .iter()
            .map(|a| match a.kind {
                AggregateKind::CountStar | AggregateKind::Count => AggState::Count(0),
                AggregateKind::Sum | AggregateKind::Avg => AggState::Sum {
                    int: 0,
                    float: 0.0,
                    floats: 0,
                    numerics: 0,
                    count: 0,
                },
                AggregateKind::Min | AggregateKind::Max => AggState::Values(BTreeMap::new()),
            })
            .collect();
        Self {
            rows: 0,
            states,
            row: None,
            touched: false,
        }
    }

    /// Adds `weight` copies of an input row whose aggregate arguments are `args`
    /// (`Datum::Null` for count(*)).
    pub(crate) fn add(
        &mut self,
        aggregates: &[Aggregate],
        args: &[Datum],
        weight: i64,
    ) -> Result<(), EvalError> {
        self.rows += weight;
        for ((aggregate, state), arg) in aggregates.iter().zip(&mut self.states).zip(args) {
            if aggregate.kind == AggregateKind::CountStar {
                if let AggState::Count(n) = state {
                    *n += weight;
                }
                continue;
            }
            if arg.is_null() {
                continue;
            }
            match state {
                AggState::Count(n) => *n += weight,
                AggState::Sum {
                    int,
                    float,
                    floats,
                    numerics,
                    count,
                } => {
                    *count += weight;
                    match arg {
                        Datum::Int(i) => *int += i128::from(*i) * i128::from(weight),
                        Datum::Float(f) => {
                            *float += f * weight as f64;
                            *floats += weight;
                        }
                        Datum::Numeric(_) => {
                            *float += arg.as_f64().unwrap_or(f64::NAN) * weight as f64;
                            *numerics += weight;
                        }
                        other => return Err(expr_error(format!("sum/avg of {other:?}"))),
                    }
                }
                AggState::Values(values) => {
                    let entry = values.entry(arg.clone()).or_insert(0);
                    *entry += weight;
                    if *entry == 0 {
                        values.remove(arg);
                    }
                }
            }
        }
        Ok(())
    }

    /// The current aggregate values.
    pub(crate) fn values(&self, aggregates: &[Aggregate]) -> Result<Tuple, EvalError> {
        // A loop, not `collect` into a `Result`: this runs per touched group per batch, and
        // the loop is several times cheaper.
        let mut values = Tuple::with_capacity(aggregates.len());
        for (aggregate, state) in aggregates.iter().zip(&self.states) {
            values.push(value(aggregate.kind, state)?);
        }
        Ok(values)
    }
}

fn value(kind: AggregateKind, state: &AggState) -> Result<Datum, EvalError> {
    Ok(match state {
        AggState::Count(n) => Datum::Int(*n),
        AggState::Sum { count: 0, .. } => Datum::Null,
        AggState::Sum {
            int,
            float,
            floats,
            numerics,
            count,
        } => {
            let mixed = *floats != 0 || *numerics != 0;
            match kind {
                AggregateKind::Avg => Datum::Float((*int as f64 + float) / *count as f64),
                _ if !mixed => Datum::Int(
                    i64::try_from(*int).map_err(|_| expr_error("sum out of range of bigint"))?,
                ),
                _ if *floats == 0 => Datum::Numeric((*int as f64 + float).to_string().into()),
                _ => Datum::Float(*int as f64 + float),
            }
        }
        AggState::Values(values) => {
            let pick = match kind {
                AggregateKind::Min => values.keys().next(),
                _ => values.keys().next_back(),
            };
            pick.cloned().unwrap_or(Datum::Null)
        }
    })
}
