//! No panic on 1,000,000 fuzzed query strings: token soup built from SQL's keywords, the
//! catalog's names, literals and operators, plus mutations (cuts, swaps) of valid queries.
//! Every string is either planned or refused with an error; accepted ones also run a batch.

// Test code: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use surefoot_core_model::{AckToken, Batch, Change, Lsn, Position, Row, SourceId, TableRef, Value};
use surefoot_query::ContinuousQuery;

const TOKENS: &[&str] = &[
    "SELECT", "FROM", "WHERE", "GROUP", "BY", "HAVING", "JOIN", "LEFT", "INNER", "ON", "AND", "OR",
    "NOT", "IS", "NULL", "IN", "LIKE", "CASE", "WHEN", "THEN", "ELSE", "END", "CAST", "AS", "int",
    "text", "count", "sum", "avg", "min", "max", "coalesce", "lower", "substr", "a", "b", "c",
    "a.id", "b.a_id", "c.b_id", "x", "y", "z", "g", "s", "t", "id", "(", ")", ",", "*", "+", "-",
    "/", "%", "=", "<>", "<", ">=", "||", "::", "'ab'", "1", "0", "-3", "2.5", "ORDER", "LIMIT",
    "OVER", "DISTINCT", "UNION", "WITH", "EXISTS", ";", "\n", "\"Q\"", "$1", "[", "]",
];

const SEEDS: &[&str] = &[
    "SELECT a.g, count(*) AS n, sum(b.y) FROM a JOIN b ON b.a_id = a.id WHERE a.x > 1 GROUP BY a.g HAVING count(*) > 1",
    "SELECT id, CASE WHEN x IS NULL THEN 'n' ELSE lower(s) END, x::text || '!' FROM a WHERE s LIKE 'a%' OR g IN (1, 2)",
    "SELECT a.id, b.id, c.id FROM a LEFT JOIN b ON b.a_id = a.id LEFT JOIN c ON c.b_id = b.id",
];

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn fuzzed(rng: &mut XorShift) -> String {
    if rng.below(3) == 0 {
        let seed = SEEDS[rng.below(SEEDS.len())];
        let mut words: Vec<&str> = seed.split(' ').collect();
        for _ in 0..=rng.below(3) {
            let i = rng.below(words.len());
            match rng.below(3) {
                0 => {
                    words.remove(i);
                }
                1 => words[i] = TOKENS[rng.below(TOKENS.len())],
                _ => {
                    let j = rng.below(words.len());
                    words.swap(i, j);
                }
            }
            if words.is_empty() {
                break;
            }
        }
        return words.join(" ");
    }
    let mut text = String::from("SELECT ");
    for _ in 0..rng.below(24) {
        text.push_str(TOKENS[rng.below(TOKENS.len())]);
        text.push(' ');
    }
    text
}

fn batch() -> Batch {
    let row = Row::new()
        .with("id", Value::Int32(1))
        .with("g", Value::Int32(1))
        .with("x", Value::Int32(2))
        .with("s", Value::Text("ab".into()));
    let change = Change::insert(
        Position::postgres(Lsn(16), 1),
        TableRef::new("public", "a"),
        row,
    );
    Batch {
        source: SourceId::new("pg"),
        first: change.position,
        last: change.position,
        commit_time: None,
        changes: vec![change].into(),
        ack: AckToken::detached(),
    }
}

#[test]
fn a_million_fuzzed_queries_are_planned_or_refused_without_a_panic() {
    let catalog = common::catalog();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let (mut accepted, mut refused) = (0u32, 0u32);
    for _ in 0..1_000_000 {
        let sql = fuzzed(&mut rng);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            match ContinuousQuery::new("q", &sql, &catalog) {
                Ok(mut query) => {
                    // Evaluation may fail (a type error, say) but must not panic.
                    if let Ok(Some(output)) = query.process(batch()) {
                        output.ack.delivered();
                    }
                    true
                }
                Err(error) => {
                    assert!(!error.to_string().is_empty());
                    false
                }
            }
        }));
        match outcome {
            Ok(true) => accepted += 1,
            Ok(false) => refused += 1,
            Err(_) => panic!("panicked on {sql:?}"),
        }
    }
    eprintln!("{accepted} accepted, {refused} refused");
    assert!(
        accepted > 1_000,
        "the fuzzer produced too few valid queries: {accepted}"
    );
}
