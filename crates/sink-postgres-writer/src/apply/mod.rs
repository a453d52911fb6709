//! One sink transaction: checkpoints locked, changes at or below them proven applied by the
//! applied-batch records (and skipped) or refused, rows validated, mirror plans, events, handlers
//! and outbox messages written, checkpoints advanced with the records of what was applied. The
//! caller begins and commits the transaction.

pub(crate) mod checkpoint;
pub(crate) mod copy;
pub(crate) mod digest;
pub(crate) mod group;
pub(crate) mod insert_first;
pub(crate) mod mirror;
pub(crate) mod outbox;
pub(crate) mod record;
pub(crate) mod replay;
pub(crate) mod rows;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sqlx::PgConnection;
use surefoot_core_model::{Batch, Change, Position, SourceId};

use self::checkpoint::Locked;
use self::digest::{Digest, Digester};
use self::outbox::OutboxMessages;
use self::record::Item;
use self::replay::{at_or_below, check_order, items, prove_replays};
use self::rows::{ChangeRows, op_name};
use crate::config::RecordRetention;
use crate::error::WriterError;
use crate::handler::{Handler, HandlerInput};
use crate::ident::QualifiedName;
use crate::plan::MirrorPlan;
use crate::routes::{RouteMode, Routes};
use crate::schema::SchemaCache;

/// What one sink transaction did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushStats {
    /// Changes applied (mirror effects, events, handler input).
    pub applied: u64,
    /// Changes at or below the checkpoint, proven applied by the applied-batch records (a true
    /// redelivery), skipped.
    pub already_applied: u64,
    /// Changes of tables no route covers, skipped.
    pub unrouted: u64,
    /// Changes written to the dead-letter table instead.
    pub dead_lettered: u64,
    /// Outbox messages written.
    pub published: u64,
}

/// What a flush needs from the writer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlushContext<'a> {
    pub(crate) sink: &'a str,
    pub(crate) routes: &'a Routes,
    pub(crate) schema: &'a SchemaCache,
    /// Purge the applied-batch records of the flush's sources past this retention.
    pub(crate) purge: Option<RecordRetention>,
}

struct CustomCall<'a> {
    name: String,
    handler: Arc<dyn Handler>,
    source: &'a SourceId,
    changes: Vec<&'a Change>,
}

/// A flush's planned writes.
#[derive(Default)]
pub(crate) struct Work<'a> {
    plans: BTreeMap<QualifiedName, (Vec<String>, MirrorPlan<'a>)>,
    events: ChangeRows,
    dead: ChangeRows,
    custom: Vec<CustomCall<'a>>,
    custom_index: HashMap<(String, &'a str), usize>,
    outbox: OutboxMessages,
    stats: FlushStats,
    /// The digest of each batch's changes, in the flush's order (made while planning ahead).
    digests: Vec<Digest>,
}

/// The last position per source that a sink transaction will have applied once committed.
pub(crate) type Lasts = BTreeMap<String, Position>;

/// The highest `last` per source of `batches`.
pub(crate) fn lasts(batches: &[&Batch]) -> Lasts {
    let mut lasts = Lasts::new();
    for batch in batches {
        let entry = lasts
            .entry(batch.source.as_str().to_owned())
            .or_insert(batch.last);
        *entry = (*entry).max(batch.last);
    }
    lasts
}

/// The checkpoints a flush holds, per source.
pub(crate) type Checkpoints<'b> = BTreeMap<&'b str, Locked>;

/// The last position applied from `source`, if any.
pub(crate) fn seen(checkpoints: &Checkpoints<'_>, source: &str) -> Option<Position> {
    checkpoints.get(source).and_then(|locked| locked.seen)
}

/// Routes, validates and plans `batches`, skipping what `checkpoints` show applied. CPU only, so
/// it can run before the transaction begins (with no checkpoints: nothing skipped) while the
/// previous transaction is still on the server.
pub(crate) fn plan_flush<'a>(
    ctx: FlushContext<'_>,
    batches: &[&'a Batch],
    checkpoints: &Checkpoints<'_>,
) -> Result<Work<'a>, WriterError> {
    let mut work = Work::default();
    for batch in batches {
        plan_batch(ctx, &mut work, batch, checkpoints)?;
    }
    Ok(work)
}

/// Changes planned between two yields of [`plan_flush_yielding`].
const CHANGES_PER_YIELD: usize = 500;

/// [`plan_flush`] with nothing skipped, yielding to the runtime every few hundred changes, so
/// that a transaction begun ahead, planning in the same task as the one before it, does not
/// hold up that one's replies from the server.
pub(crate) async fn plan_flush_yielding<'a>(
    ctx: FlushContext<'_>,
    batches: &[&'a Batch],
) -> Result<Work<'a>, WriterError> {
    let (mut work, none) = (Work::default(), Checkpoints::new());
    let mut digester = Digester::default();
    let mut since_yield = 0;
    for batch in batches {
        plan_batch(ctx, &mut work, batch, &none)?;
        work.digests.push(digester.digest(&batch.changes));
        since_yield += batch.changes.len();
        if since_yield >= CHANGES_PER_YIELD {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
    }
    for (target, (key, plan)) in &mut work.plans {
        let inserts_first = match (key.as_slice(), ctx.schema.cached(target)) {
            ([key], Some(table)) => insert_first::applies(&table, key),
            _ => false,
        };
        if inserts_first {
            plan.rendered = insert_first::render(plan);
            tokio::task::yield_now().await;
        }
    }
    Ok(work)
}

fn plan_batch<'a>(
    ctx: FlushContext<'_>,
    work: &mut Work<'a>,
    batch: &'a Batch,
    checkpoints: &Checkpoints<'_>,
) -> Result<(), WriterError> {
    // Exactly the prefix `prove_replays` proved (or found below the unrecorded horizon): a
    // change at or below the checkpoint later in the batch is applied, never skipped unproven.
    let old = at_or_below(batch, seen(checkpoints, batch.source.as_str())).len();
    work.stats.already_applied += old as u64;
    for change in &batch.changes[old..] {
        route_change(ctx, work, batch, change)?;
    }
    Ok(())
}

/// Applies `batches` on `conn`, inside the caller's transaction. `planned` is their plan made
/// with no checkpoints; it is made again when the locked checkpoints show part of them applied.
/// With `after`, the transaction before this one may not have committed when this one began:
/// unless the checkpoints it locks show that transaction's positions, nothing is written and
/// [`WriterError::PredecessorNotCommitted`] is returned.
pub(crate) async fn apply_flush<'a>(
    ctx: FlushContext<'_>,
    conn: &mut PgConnection,
    batches: &[&'a Batch],
    mut planned: Work<'a>,
    after: Option<&Lasts>,
) -> Result<FlushStats, WriterError> {
    check_order(batches)?;
    let checkpoints = lock_checkpoints(ctx, conn, batches).await?;
    if let Some(after) = after {
        check_predecessor(after, &checkpoints)?;
    }
    prove_replays(ctx, conn, batches, &checkpoints).await?;
    let items = items(batches, &checkpoints, &std::mem::take(&mut planned.digests))?;
    let mut work = if skips_any(batches, &checkpoints) {
        plan_flush(ctx, batches, &checkpoints)?
    } else {
        planned
    };
    let mut stats = work.stats;
    work.dead.insert_dead_letters(conn, ctx.sink).await?;
    for (target, (key, plan)) in work.plans {
        let table = ctx.schema.get(conn, &target).await?;
        mirror::apply(conn, &table, &key, plan).await?;
    }
    work.events.insert_events(conn, ctx.sink).await?;
    for call in work.custom {
        let input = HandlerInput {
            source: call.source,
            changes: &call.changes,
        };
        call.handler
            .handle(conn, input, &mut work.outbox)
            .await
            .map_err(|source| WriterError::Handler {
                handler: call.name.clone(),
                source,
            })?;
    }
    stats.published = work.outbox.len() as u64;
    work.outbox.insert(conn, ctx.sink).await?;
    advance_checkpoints(ctx, conn, batches, &checkpoints, &items).await?;
    if let Some(retention) = ctx.purge {
        for source in checkpoints.keys() {
            record::purge(conn, ctx.sink, source, retention.keep, retention.max_age).await?;
        }
    }
    Ok(stats)
}

fn route_change<'a>(
    ctx: FlushContext<'_>,
    work: &mut Work<'a>,
    batch: &'a Batch,
    change: &'a Change,
) -> Result<(), WriterError> {
    let source = batch.source.as_str();
    let Some(route) = ctx.routes.get(&change.table) else {
        work.stats.unrouted += 1;
        return Ok(());
    };
    if let Some(reason) = change.after().and_then(|row| route.violation(row)) {
        work.stats.dead_lettered += 1;
        return work.dead.push(source, change, reason, batch.commit_time);
    }
    match &route.mode {
        RouteMode::Mirror { key } => {
            // Looked up before inserting, so the target's name is cloned once per flush, not
            // once per change.
            if !work.plans.contains_key(&route.target) {
                work.plans
                    .insert(route.target.clone(), (key.clone(), MirrorPlan::default()));
            }
            let Some((_, plan)) = work.plans.get_mut(&route.target) else {
                return Ok(());
            };
            if let Err(problem) = plan.add(change, key) {
                work.stats.dead_lettered += 1;
                return work.dead.push(source, change, problem, batch.commit_time);
            }
        }
        RouteMode::Append => {
            work.events.push(
                source,
                change,
                op_name(change).to_owned(),
                batch.commit_time,
            )?;
        }
        RouteMode::Custom { name, handler } => {
            work.events.push(
                source,
                change,
                op_name(change).to_owned(),
                batch.commit_time,
            )?;
            let slot = *work
                .custom_index
                .entry((name.clone(), source))
                .or_insert_with(|| {
                    work.custom.push(CustomCall {
                        name: name.clone(),
                        handler: Arc::clone(handler),
                        source: &batch.source,
                        changes: Vec::new(),
                    });
                    work.custom.len() - 1
                });
            work.custom[slot].changes.push(change);
        }
    }
    work.stats.applied += 1;
    if let Some(stream) = &route.publish {
        let payload = serde_json::json!({ "source": source, "change": change });
        work.outbox.push(stream.clone(), &payload);
    }
    Ok(())
}

/// Whether any change of `batches` is at or below its source's checkpoint.
fn skips_any(batches: &[&Batch], checkpoints: &Checkpoints<'_>) -> bool {
    batches.iter().any(|batch| {
        seen(checkpoints, batch.source.as_str()).is_some_and(|seen| batch.first <= seen)
    })
}

/// Fails unless every source of `after` that this transaction locked is at or past `after`'s
/// position: otherwise the transaction before did not commit (it failed, or is being retried),
/// and applying this one now would put later changes before earlier ones.
fn check_predecessor(after: &Lasts, checkpoints: &Checkpoints<'_>) -> Result<(), WriterError> {
    for (source, last) in after {
        let seen = seen(checkpoints, source.as_str());
        if seen.is_none_or(|seen| seen < *last) {
            return Err(WriterError::PredecessorNotCommitted {
                source_id: source.clone(),
            });
        }
    }
    Ok(())
}

/// Locks each source's checkpoint, in name order so two writers cannot deadlock.
async fn lock_checkpoints<'b>(
    ctx: FlushContext<'_>,
    conn: &mut PgConnection,
    batches: &[&'b Batch],
) -> Result<Checkpoints<'b>, WriterError> {
    let mut checkpoints: Checkpoints<'b> = batches
        .iter()
        .map(|b| (b.source.as_str(), Locked::default()))
        .collect();
    for (source, locked) in &mut checkpoints {
        *locked = checkpoint::lock(conn, ctx.sink, source).await?;
    }
    Ok(checkpoints)
}

async fn advance_checkpoints(
    ctx: FlushContext<'_>,
    conn: &mut PgConnection,
    batches: &[&Batch],
    checkpoints: &Checkpoints<'_>,
    items: &BTreeMap<String, Vec<Item>>,
) -> Result<(), WriterError> {
    for (source, last) in lasts(batches) {
        let seen = seen(checkpoints, source.as_str());
        if seen.is_none_or(|seen| last > seen) {
            let recorded = items.get(&source).map_or(&[][..], Vec::as_slice);
            checkpoint::advance_recording(conn, ctx.sink, &source, last, recorded).await?;
        }
    }
    Ok(())
}

/// Records every unapplied change of `batch` as a dead letter with `reason` and advances the
/// checkpoint past it, so the writer can go on. Returns the changes recorded.
pub(crate) async fn dead_letter_batch(
    ctx: FlushContext<'_>,
    conn: &mut PgConnection,
    batch: &Batch,
    reason: &str,
) -> Result<u64, WriterError> {
    let seen = checkpoint::lock(conn, ctx.sink, batch.source.as_str())
        .await?
        .seen;
    let mut dead = ChangeRows::default();
    let new = &batch.changes[at_or_below(batch, seen).len()..];
    for change in new {
        dead.push(
            batch.source.as_str(),
            change,
            reason.to_owned(),
            batch.commit_time,
        )?;
    }
    let recorded = dead.len() as u64;
    dead.insert_dead_letters(conn, ctx.sink).await?;
    if seen.is_none_or(|seen| batch.last > seen) {
        // Recorded as applied: a redelivery of it is proven and skipped, not refused.
        let items: Vec<Item> = Item::of(new, None)?.into_iter().collect();
        let source = batch.source.as_str();
        checkpoint::advance_recording(conn, ctx.sink, source, batch.last, &items).await?;
    }
    Ok(recorded)
}
