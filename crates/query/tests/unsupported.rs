//! SQL outside the subset is refused when the query is created, naming the construct and
//! where it starts; invalid names are refused the same way.

// Test code: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use surefoot_query::{ContinuousQuery, QueryError, TextPosition};

fn refused(sql: &str) -> QueryError {
    match ContinuousQuery::new("q", sql, &common::catalog()) {
        Ok(_) => panic!("accepted: {sql}"),
        Err(error) => error,
    }
}

#[test]
fn each_unsupported_construct_is_named_with_its_line_and_column() {
    // (query, what the message names, line, column). The position is where sqlparser's span
    // of the refused node starts: for a join, its table; for ORDER BY, its first expression.
    let cases: &[(&str, &str, u64, u64)] = &[
        (
            "SELECT id, row_number() OVER (ORDER BY x) FROM a",
            "window function",
            1,
            12,
        ),
        (
            "SELECT id FROM a WHERE x IN (SELECT y FROM b)",
            "subquery",
            1,
            24,
        ),
        (
            "SELECT id FROM a WHERE EXISTS (SELECT 1 FROM b)",
            "subquery",
            1,
            32,
        ),
        ("SELECT id FROM a ORDER BY x", "ORDER BY", 1, 27),
        ("SELECT id FROM a\nLIMIT 5", "LIMIT", 2, 7),
        (
            "SELECT a.id FROM a JOIN b ON b.y > a.x",
            "non-equi join",
            1,
            30,
        ),
        (
            "SELECT a.id FROM a JOIN b ON a.x + 1 = b.y",
            "non-equi join",
            1,
            30,
        ),
        (
            "SELECT a.id FROM a RIGHT JOIN b ON b.a_id = a.id",
            "RIGHT JOIN",
            1,
            31,
        ),
        (
            "SELECT a.id FROM a FULL JOIN b ON b.a_id = a.id",
            "FULL JOIN",
            1,
            30,
        ),
        ("SELECT a.id FROM a CROSS JOIN b", "CROSS JOIN", 1, 31),
        ("SELECT a.id FROM a, b", "implicit cross join", 1, 21),
        ("SELECT DISTINCT x FROM a", "DISTINCT", 1, 1),
        (
            "SELECT id FROM a UNION SELECT id FROM b",
            "set operation",
            1,
            1,
        ),
        (
            "WITH t AS (SELECT id FROM a) SELECT id FROM t",
            "WITH",
            1,
            1,
        ),
        ("SELECT * FROM a", "SELECT *", 1, 8),
        ("SELECT count(DISTINCT x) FROM a", "DISTINCT", 1, 8),
        (
            "SELECT x FROM (SELECT x FROM a) AS t",
            "subquery in FROM",
            1,
            16,
        ),
        ("SELECT id, now() FROM a", "function now", 1, 12),
        ("SELECT g FROM a GROUP BY ROLLUP (g)", "ROLLUP", 1, 34),
        ("SELECT id FROM a\n  WHERE x ~ 'a'", "operator", 2, 9),
        ("SELECT sum(x) FILTER (WHERE x > 0) FROM a", "FILTER", 1, 8),
        ("DELETE FROM a", "other than SELECT", 1, 1),
        (
            "SELECT id FROM a; SELECT id FROM b",
            "more than one statement",
            1,
            19,
        ),
        ("SELECT a.id FROM a JOIN b USING (id)", "USING", 1, 25),
    ];
    let mut failures = Vec::new();
    for (sql, construct, line, column) in cases {
        let error = refused(sql);
        let message = error.to_string();
        let expected = TextPosition {
            line: *line,
            column: *column,
        };
        let ok = matches!(error, QueryError::Unsupported { .. })
            && message.contains(construct)
            && error.position() == Some(expected);
        if !ok {
            failures.push(format!("{sql:?}: {message} ({:?})", error.position()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_names_and_misplaced_aggregates_are_refused_with_a_position() {
    let cases: &[(&str, &str, u64, u64)] = &[
        ("SELECT nope FROM a", "unknown column `nope`", 1, 8),
        ("SELECT id FROM missing", "unknown table", 1, 16),
        (
            "SELECT a.id FROM a JOIN b ON b.a_id = a.id WHERE id > 1",
            "ambiguous",
            1,
            50,
        ),
        (
            "SELECT id FROM a WHERE count(*) > 1",
            "not allowed in WHERE",
            1,
            24,
        ),
        (
            "SELECT g, x FROM a GROUP BY g",
            "must appear in GROUP BY",
            1,
            11,
        ),
        ("SELECT sum(max(x)) FROM a", "nested", 1, 12),
        ("SELECT z.id FROM a", "no table `z`", 1, 8),
    ];
    let mut failures = Vec::new();
    for (sql, text, line, column) in cases {
        let error = refused(sql);
        let expected = TextPosition {
            line: *line,
            column: *column,
        };
        if !error.to_string().contains(text) || error.position() != Some(expected) {
            failures.push(format!("{sql:?}: {error} ({:?})", error.position()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_syntax_error_carries_the_parser_position() {
    let error = refused("SELECT id\nFROM a WHERE )");
    assert!(matches!(error, QueryError::Syntax { .. }), "{error}");
    assert!(error.to_string().contains("Line: 2, Column: 14"), "{error}");
}
