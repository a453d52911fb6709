//! Changes/s through a filter, a join and a group-by, each against the same work done by a
//! hand-written `HashMap` loop in the same run (the limit): read the changed rows' columns,
//! keep what retraction needs, fold each batch into one diff per touched result key (insert,
//! update with before and after, delete with key and before) and build them as the same
//! `Change`s. The run fails unless both emit the same number of diffs.
//!
//! Workload per query: inserts of 20,000 `a` rows and 40,000 `b` rows, then 140,000 updates
//! (values and join columns; no key changes) and deletes with re-inserts, in batches of 100
//! changes. Three runs each, alternating; the median is reported.
//!
//! The ratio is of wall-clock rates. Beside it, the ratio of the threads' CPU times: on a busy
//! machine the wall clock also counts time other processes held the core, and the CPU-time
//! ratio shows how much of a ratio's swing is that.
//!
//! Run: `cargo bench -p surefoot-query --bench throughput`; `SUREFOOT_BENCH_ONLY=filter|join|group-by`
//! runs one query.

// A benchmark program: it reports on stdout, and a failed unwrap is the run failing.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

#[path = "throughput/folded.rs"]
mod folded;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use surefoot_core_model::{
    AckToken, Batch, Change, Lsn, Operation, Position, Row, SourceId, TableRef, Value,
};
use surefoot_query::{Catalog, ContinuousQuery, TableSchema};

use folded::Folded;

const A_ROWS: i64 = 20_000;
const B_ROWS: i64 = 40_000;
const UPDATES: usize = 140_000;
const BATCH: usize = 100;
const REPS: usize = 3;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: i64) -> i64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as i64
    }
}

fn a() -> TableRef {
    TableRef::new("public", "a")
}

fn b() -> TableRef {
    TableRef::new("public", "b")
}

fn a_row(id: i64, g: i64, x: i64) -> Row {
    Row::new()
        .with("id", Value::Int64(id))
        .with("g", Value::Int64(g))
        .with("x", Value::Int64(x))
}

fn b_row(id: i64, a_id: i64, y: i64) -> Row {
    Row::new()
        .with("id", Value::Int64(id))
        .with("a_id", Value::Int64(a_id))
        .with("y", Value::Int64(y))
}

fn key(id: i64) -> Row {
    Row::new().with("id", Value::Int64(id))
}

fn workload() -> Vec<Vec<Change>> {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut changes = Vec::new();
    let position = |n: usize| Position::postgres(Lsn(n as u64 / BATCH as u64 + 1), n as u32);
    for id in 0..A_ROWS {
        let row = a_row(id, rng.below(100), rng.below(21) - 10);
        changes.push(Change::insert(position(changes.len()), a(), row));
    }
    for id in 0..B_ROWS {
        let row = b_row(id, rng.below(A_ROWS), rng.below(100));
        changes.push(Change::insert(position(changes.len()), b(), row));
    }
    for _ in 0..UPDATES / 2 {
        let n = changes.len();
        match rng.below(10) {
            0 => {
                let id = rng.below(A_ROWS);
                changes.push(Change::delete(position(n), a(), Some(key(id)), None));
                let row = a_row(id, rng.below(100), rng.below(21) - 10);
                changes.push(Change::insert(position(n + 1), a(), row));
            }
            1..=4 => {
                let (id, g, x) = (rng.below(A_ROWS), rng.below(100), rng.below(21) - 10);
                changes.push(Change::update(
                    position(n),
                    a(),
                    None,
                    None,
                    a_row(id, g, x),
                ));
                let (id, g, x) = (rng.below(A_ROWS), rng.below(100), rng.below(21) - 10);
                changes.push(Change::update(
                    position(n + 1),
                    a(),
                    None,
                    None,
                    a_row(id, g, x),
                ));
            }
            _ => {
                let (id, a_id, y) = (rng.below(B_ROWS), rng.below(A_ROWS), rng.below(100));
                changes.push(Change::update(
                    position(n),
                    b(),
                    None,
                    None,
                    b_row(id, a_id, y),
                ));
                let (id, a_id, y) = (rng.below(B_ROWS), rng.below(A_ROWS), rng.below(100));
                changes.push(Change::update(
                    position(n + 1),
                    b(),
                    None,
                    None,
                    b_row(id, a_id, y),
                ));
            }
        }
    }
    changes.chunks(BATCH).map(<[Change]>::to_vec).collect()
}

fn int(row: &Row, name: &str) -> i64 {
    match row.get(name) {
        Some(Value::Int64(i)) => *i,
        other => panic!("{name}: {other:?}"),
    }
}

/// The id of a change's row and its new row, if any.
fn id_and_after(change: &Change) -> (i64, Option<&Row>) {
    match &change.operation {
        Operation::Insert { after } | Operation::Update { after, .. } => {
            (int(after, "id"), Some(after))
        }
        Operation::Delete { key, .. } => (int(key.as_ref().unwrap(), "id"), None),
        Operation::Truncate => unreachable!(),
    }
}

/// Hand-written: `SELECT id, x FROM a WHERE x > 0`.
fn limit_filter(batches: &[Vec<Change>]) -> usize {
    let table_a = a();
    let mut result: Folded<i64, (i64, i64)> = Folded::new(&["id", "x"], &["_key.a.id"]);
    let mut diffs = 0;
    for batch in batches {
        for change in batch.iter().filter(|c| c.table == table_a) {
            let (id, after) = id_and_after(change);
            let x = after.map(|row| int(row, "x")).filter(|x| *x > 0);
            result.set(id, x.map(|x| (id, x)));
        }
        diffs += result.finish().len();
    }
    diffs
}

/// Hand-written: `SELECT a.id, b.id, a.x + b.y FROM a JOIN b ON b.a_id = a.id`.
fn limit_join(batches: &[Vec<Change>]) -> usize {
    let table_a = a();
    let mut a_rows: HashMap<i64, i64> = HashMap::new();
    let mut b_rows: HashMap<i64, (i64, i64)> = HashMap::new();
    let mut by_a: HashMap<i64, HashMap<i64, i64>> = HashMap::new();
    let mut result: Folded<(i64, i64), (i64, i64, i64)> =
        Folded::new(&["id", "bid", "total"], &["_key.a.id", "_key.b.id"]);
    let mut diffs = 0;
    for batch in batches {
        for change in batch {
            let (id, after) = id_and_after(change);
            if change.table == table_a {
                let x = after.map(|row| int(row, "x"));
                match x {
                    Some(x) => a_rows.insert(id, x),
                    None => a_rows.remove(&id),
                };
                for (b_id, y) in by_a.get(&id).into_iter().flatten() {
                    result.set((id, *b_id), x.map(|x| (id, *b_id, x + y)));
                }
            } else {
                if let Some((old_a, _)) = b_rows.remove(&id) {
                    by_a.get_mut(&old_a).map(|bs| bs.remove(&id));
                    result.set((old_a, id), None);
                }
                if let Some(row) = after {
                    let (a_id, y) = (int(row, "a_id"), int(row, "y"));
                    b_rows.insert(id, (a_id, y));
                    by_a.entry(a_id).or_default().insert(id, y);
                    if let Some(x) = a_rows.get(&a_id) {
                        result.set((a_id, id), Some((a_id, id, x + y)));
                    }
                }
            }
        }
        diffs += result.finish().len();
    }
    diffs
}

/// Hand-written: `SELECT g, count(*), sum(x) FROM a GROUP BY g`.
fn limit_group(batches: &[Vec<Change>]) -> usize {
    let table_a = a();
    let mut rows: HashMap<i64, (i64, i64)> = HashMap::new();
    let mut result: Folded<i64, (i64, i64, i64)> = Folded::new(&["g", "n", "s"], &["_key.1"]);
    let mut diffs = 0;
    for batch in batches {
        for change in batch.iter().filter(|c| c.table == table_a) {
            let (id, after) = id_and_after(change);
            let new = after.map(|row| (int(row, "g"), int(row, "x")));
            let old = match new {
                Some(new) => rows.insert(id, new),
                None => rows.remove(&id),
            };
            let mut add = |(g, x): (i64, i64), sign: i64| {
                let (_, n, s) = result.get(&g).copied().unwrap_or((g, 0, 0));
                let (n, s) = (n + sign, s + sign * x);
                result.set(g, (n > 0).then_some((g, n, s)));
            };
            if let Some(old) = old {
                add(old, -1);
            }
            if let Some(new) = new {
                add(new, 1);
            }
        }
        diffs += result.finish().len();
    }
    diffs
}

/// Ours, fed the batches' changes as a source hands them on (shared, not copied).
fn ours(sql: &str, batches: &[std::sync::Arc<[Change]>]) -> usize {
    let catalog = Catalog::new()
        .with(TableSchema::new(a(), &["id", "g", "x"], &["id"]))
        .with(TableSchema::new(b(), &["id", "a_id", "y"], &["id"]));
    let mut query = ContinuousQuery::new("q", sql, &catalog).unwrap();
    let mut diffs = 0;
    for changes in batches {
        let batch = Batch {
            source: SourceId::new("pg"),
            first: changes[0].position,
            last: changes[changes.len() - 1].position,
            commit_time: None,
            changes: std::sync::Arc::clone(changes),
            ack: AckToken::detached(),
        };
        if let Some(output) = query.process(batch).unwrap() {
            diffs += output.changes.len();
            output.ack.delivered();
        }
    }
    diffs
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The CPU time this thread has used: unlike the wall clock, it does not count the time
/// other processes on a busy machine held the core.
fn thread_cpu_time() -> Duration {
    let spec = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("the thread CPU-time clock");
    Duration::from(spec)
}

/// Wall and CPU time of `work`, and its result.
fn timed<T>(work: impl FnOnce() -> T) -> (Duration, Duration, T) {
    let (wall, cpu) = (Instant::now(), thread_cpu_time());
    let result = work();
    (wall.elapsed(), thread_cpu_time() - cpu, result)
}

fn main() {
    let batches = workload();
    let shared: Vec<std::sync::Arc<[Change]>> = batches.iter().map(|b| b.clone().into()).collect();
    let changes: usize = batches.iter().map(Vec::len).sum();
    println!("{changes} changes in batches of {BATCH}; median of {REPS} runs");
    type Limit = fn(&[Vec<Change>]) -> usize;
    let cases: [(&str, &str, Limit); 3] = [
        ("filter", "SELECT id, x FROM a WHERE x > 0", limit_filter),
        (
            "join",
            "SELECT a.id, b.id AS bid, a.x + b.y AS total FROM a JOIN b ON b.a_id = a.id",
            limit_join,
        ),
        (
            "group-by",
            "SELECT g, count(*) AS n, sum(x) AS s FROM a GROUP BY g",
            limit_group,
        ),
    ];
    let only = std::env::var("SUREFOOT_BENCH_ONLY").ok();
    for (name, sql, limit) in cases {
        if only.as_deref().is_some_and(|only| only != name) {
            continue;
        }
        let (mut our_times, mut limit_times) = (Vec::new(), Vec::new());
        let (mut our_cpu, mut limit_cpu) = (Vec::new(), Vec::new());
        let (mut our_diffs, mut limit_diffs) = (0, 0);
        for _ in 0..REPS {
            let (wall, cpu, diffs) = timed(|| limit(&batches));
            limit_times.push(wall);
            limit_cpu.push(cpu);
            limit_diffs = diffs;
            let (wall, cpu, diffs) = timed(|| ours(sql, &shared));
            our_times.push(wall);
            our_cpu.push(cpu);
            our_diffs = diffs;
        }
        assert_eq!(
            our_diffs, limit_diffs,
            "{name}: the hand-written loop must emit the query's diffs"
        );
        let rate = |t: Duration| changes as f64 / t.as_secs_f64();
        let (our_rate, limit_rate) = (rate(median(our_times)), rate(median(limit_times)));
        let cpu_ratio = median(limit_cpu).as_secs_f64() / median(our_cpu).as_secs_f64();
        println!(
            "{name:9} ours {our_rate:>11.0} changes/s ({our_diffs} diffs)   hand-written {limit_rate:>11.0} changes/s ({limit_diffs} diffs)   ratio {:.2}   (CPU-time ratio {cpu_ratio:.2})",
            our_rate / limit_rate
        );
    }
}
