//! The differential test: for each query, random transactions of inserts, updates (key changes
//! and unchanged TOAST values included) and deletes go to a real PostgreSQL and, as replication
//! changes, to the continuous query; after every transaction the folded diffs must equal
//! PostgreSQL's answer to the same SQL, and so must the query's current result (a projection's
//! is evaluated again from its state, not held). One server per test; tables truncated between
//! cases.

// Test code: a failed unwrap is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use common::Differential;

/// Cases per query: 17 queries × 150 = 2,550 cases.
const CASES: u32 = 150;

fn check(sql: &str) {
    let differential = Differential::start();
    let transactions = differential.run(sql, CASES);
    eprintln!("{CASES} cases, {transactions} batches checked: {sql}");
    assert!(transactions >= u64::from(CASES));
}

#[test]
fn q01_filter() {
    check("SELECT id, x FROM a WHERE x > 0 AND s IS NOT NULL");
}

#[test]
fn q02_projection_expressions() {
    check(
        "SELECT id, x * 2 + 1 AS y, upper(s) AS us, \
         CASE WHEN x IS NULL THEN 'none' WHEN x < 0 THEN 'neg' ELSE 'pos' END AS sign, \
         coalesce(g, -1) AS g2, CAST(x AS text) || '!' AS xt, x::numeric / 4 AS q \
         FROM a WHERE s LIKE 'a%' OR g IN (1, 2)",
    );
}

#[test]
fn q03_string_functions_and_null_logic() {
    check(
        "SELECT id, length(s) AS l, substr(s, 2) AS sub, replace(s, 'a', 'z') AS r, \
         NOT (x BETWEEN 0 AND 3) AS nb, x % 3 AS m, abs(x) AS ab, x / 2 AS half, \
         lower(concat(s, '-', g)) AS c, nullif(g, 1) AS ng, s NOT LIKE '%b' AS nl, \
         CASE g WHEN 1 THEN 'one' WHEN 2 THEN 'two' END AS word \
         FROM a WHERE g IS NULL OR x <> 2 OR NOT g IN (0, 3, NULL)",
    );
}

#[test]
fn q04_inner_join() {
    check(
        "SELECT a.id, b.id AS bid, a.x + b.y AS total, b.t \
         FROM a JOIN b ON b.a_id = a.id WHERE b.y IS NOT NULL",
    );
}

#[test]
fn q05_left_join() {
    check("SELECT a.id, a.s, b.id AS bid, b.t FROM a LEFT JOIN b ON b.a_id = a.id");
}

#[test]
fn q06_three_table_join() {
    check(
        "SELECT a.id, b.id AS bid, c.id AS cid, c.z, a.s || c.u AS su \
         FROM a JOIN b ON b.a_id = a.id INNER JOIN c ON c.b_id = b.id",
    );
}

#[test]
fn q07_three_table_join_with_left_join_and_filter() {
    check(
        "SELECT a.id, b.id AS bid, c.id AS cid, c.z \
         FROM a JOIN b ON a.id = b.a_id LEFT OUTER JOIN c ON c.b_id = b.id \
         WHERE a.x IS NULL OR a.x < 4",
    );
}

#[test]
fn q08_count_star_and_count() {
    check("SELECT g, count(*) AS n, count(x) AS nx, count(s) AS ns FROM a GROUP BY g");
}

#[test]
fn q09_sum_and_avg() {
    check("SELECT g, sum(x) AS s, avg(x) AS av FROM a GROUP BY g");
}

#[test]
fn q10_min_and_max() {
    check(
        "SELECT g, min(x) AS lo, max(x) AS hi, min(s) AS first, max(s) AS last FROM a GROUP BY g",
    );
}

#[test]
fn q11_having() {
    check(
        "SELECT g, count(*) AS n, sum(x) AS s FROM a GROUP BY g \
         HAVING count(*) > 1 AND sum(x) > 0",
    );
}

#[test]
fn q12_join_then_group() {
    check(
        "SELECT a.g, count(*) AS n, sum(b.y) AS s, max(b.t) AS mt \
         FROM a JOIN b ON b.a_id = a.id GROUP BY a.g",
    );
}

#[test]
fn q13_aggregates_without_group_by() {
    check("SELECT count(*) AS n, sum(x) AS s, min(x) AS lo, max(s) AS hi, avg(x) AS av FROM a");
}

#[test]
fn q14_left_join_group_having() {
    check(
        "SELECT a.id, count(b.id) AS n, coalesce(sum(b.y), 0) AS s \
         FROM a LEFT JOIN b ON b.a_id = a.id GROUP BY a.id HAVING count(b.id) < 3",
    );
}

#[test]
fn q15_group_by_expression() {
    check(
        "SELECT x % 2 AS parity, count(*) AS n, sum(x) * 10 AS s10 \
         FROM a WHERE x IS NOT NULL GROUP BY x % 2",
    );
}

#[test]
fn q16_three_tables_grouped() {
    check(
        "SELECT c.z, count(*) AS n, min(a.x) AS lo, count(c.id) AS nc \
         FROM a JOIN b ON b.a_id = a.id LEFT JOIN c ON c.b_id = b.id GROUP BY c.z",
    );
}

#[test]
fn q17_self_join() {
    check(
        "SELECT a.id, p.id AS pid, p.x, a.x - p.x AS dx \
         FROM a LEFT JOIN a AS p ON p.id = a.g WHERE p.s IS NULL OR p.s <> a.s",
    );
}
