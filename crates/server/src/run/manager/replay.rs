//! Replaying a PostgreSQL writer's dead letters. A dead letter is an old change, and applying
//! it again could overwrite a newer one for the same key (mirror tables keep no position per
//! row), so a replay sends instead the current result of each dead-lettered key, from the query
//! the writer reads, as a new result batch (see `DurableQuery::refresh`). Once the writer's
//! checkpoint reaches that batch, the replayed dead letters are removed; a change the writer
//! refuses again is dead-lettered again, with a new id.

use std::time::{Duration, Instant};

use surefoot_core_lifecycle::timeout;
use surefoot_core_model::{Change, Position, Row};
use surefoot_sink_postgres_writer::PostgresWriter;
use tokio::sync::oneshot;

use super::{Manager, Refusal};
use crate::config::ReactionConfig;
use crate::run::segment::Command;

/// Dead letters replayed by one request at most.
const MOST: i64 = 10_000;
/// Limit of one statement on the writer's database.
const STATEMENT_LIMIT: Duration = Duration::from_secs(10);
/// Between reads of the writer's checkpoint while waiting for the replay.
const POLL: Duration = Duration::from_millis(100);

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Replayed {
    /// Dead letters replayed (and removed, when `applied`).
    pub dead_letters: usize,
    /// The result batch's last sequence; `None` when no dead letter named a key.
    pub sequence: Option<u64>,
    /// The writer applied the batch (its checkpoint reached it) within the stop deadline.
    pub applied: bool,
    /// Dead letters the writer recorded again since (the cause is not fixed).
    pub dead_lettered_again: i64,
}

impl Manager {
    /// Replays the dead letters of PostgreSQL reaction `id` (those of `ids`, or all).
    pub async fn replay_dead_letters(
        &self,
        id: &str,
        ids: Option<Vec<i64>>,
    ) -> Result<Replayed, Refusal> {
        let (query, segment) = {
            let managed = self.managed();
            let reaction = managed
                .reactions
                .get(id)
                .ok_or_else(|| Refusal::new(404, format!("no reaction `{id}`")))?;
            let ReactionConfig::Postgres(pg) = reaction else {
                return Err(Refusal::new(
                    422,
                    format!("reaction `{id}` is not a PostgreSQL writer"),
                ));
            };
            if !managed.queries.contains_key(&pg.from) {
                return Err(Refusal::new(
                    422,
                    format!(
                        "reaction `{id}` reads source `{}`: a replay sends a query's current rows",
                        pg.from
                    ),
                ));
            }
            (pg.from.clone(), managed.segments.get(&pg.from).cloned())
        };
        let not_running = || Refusal::new(503, format!("query `{query}` is not running"));
        let segment = segment.ok_or_else(not_running)?;
        let writer = self
            .inner
            .writers
            .get(id)
            .ok_or_else(|| Refusal::new(503, format!("reaction `{id}` is not connected")))?;
        let letters = read_letters(&writer, &query, ids.as_deref()).await?;
        let rows: Vec<Row> = letters
            .iter()
            .filter_map(|(_, change)| key_row(change))
            .collect();
        let (reply, done) = oneshot::channel();
        segment
            .send(Command::Refresh(rows, reply))
            .await
            .map_err(|_| not_running())?;
        let sequence = match timeout("refresh", self.inner.stop_deadline, done).await {
            Ok(Ok(Ok(sequence))) => sequence,
            Ok(Ok(Err(reason))) => return Err(Refusal::new(503, reason)),
            Ok(Err(_)) => return Err(not_running()),
            Err(error) => return Err(Refusal::new(504, error.to_string())),
        };
        let applied = match sequence {
            Some(last) => self.wait_applied(&writer, &query, last).await?,
            None => true,
        };
        let replayed: Vec<i64> = letters.iter().map(|(letter, _)| *letter).collect();
        let newest = replayed.iter().copied().max().unwrap_or(0);
        if applied {
            remove_letters(&writer, &replayed).await?;
        }
        let again = count_after(&writer, &query, newest).await?;
        tracing::info!(reaction = %id, dead_letters = replayed.len(), ?sequence, applied,
            dead_lettered_again = again, "dead letters replayed");
        Ok(Replayed {
            dead_letters: replayed.len(),
            sequence,
            applied,
            dead_lettered_again: again,
        })
    }

    /// Waits until the writer's checkpoint for `query` reaches `last`, at most the stop
    /// deadline.
    async fn wait_applied(
        &self,
        writer: &PostgresWriter,
        query: &str,
        last: u64,
    ) -> Result<bool, Refusal> {
        let until = Instant::now() + self.inner.stop_deadline;
        loop {
            let read = timeout(
                "writer checkpoint",
                STATEMENT_LIMIT,
                writer.checkpoint(query),
            )
            .await;
            match read {
                Ok(Ok(Some(Position::Sequence(held)))) if held >= last => return Ok(true),
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(Refusal::new(503, error.to_string())),
                Err(error) => return Err(Refusal::new(503, error.to_string())),
            }
            if Instant::now() >= until {
                return Ok(false);
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The row that names a dead letter's key: what it wrote, or the key it deleted.
fn key_row(change: &Change) -> Option<Row> {
    change
        .after()
        .or(change.old_key())
        .or(change.before())
        .cloned()
}

async fn read_letters(
    writer: &PostgresWriter,
    source: &str,
    ids: Option<&[i64]>,
) -> Result<Vec<(i64, Change)>, Refusal> {
    let read = sqlx::query_as::<_, (i64, serde_json::Value)>(
        "SELECT id, change FROM surefoot_writer.dead_letter \
         WHERE sink = $1 AND source = $2 AND ($3::int8[] IS NULL OR id = ANY($3)) \
         ORDER BY id LIMIT $4",
    )
    .bind(writer.sink())
    .bind(source)
    .bind(ids)
    .bind(MOST)
    .fetch_all(writer.pool());
    let rows = match timeout("read dead letters", STATEMENT_LIMIT, read).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(error)) => return Err(Refusal::new(503, error.to_string())),
        Err(error) => return Err(Refusal::new(503, error.to_string())),
    };
    rows.into_iter()
        .map(|(id, change)| {
            serde_json::from_value::<Change>(change)
                .map(|change| (id, change))
                .map_err(|error| {
                    Refusal::new(422, format!("dead letter {id}: not a change: {error}"))
                })
        })
        .collect()
}

async fn remove_letters(writer: &PostgresWriter, ids: &[i64]) -> Result<(), Refusal> {
    let remove =
        sqlx::query("DELETE FROM surefoot_writer.dead_letter WHERE sink = $1 AND id = ANY($2)")
            .bind(writer.sink())
            .bind(ids)
            .execute(writer.pool());
    match timeout("remove dead letters", STATEMENT_LIMIT, remove).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(Refusal::new(503, error.to_string())),
        Err(error) => Err(Refusal::new(503, error.to_string())),
    }
}

async fn count_after(writer: &PostgresWriter, source: &str, newest: i64) -> Result<i64, Refusal> {
    let count = sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM surefoot_writer.dead_letter WHERE sink = $1 AND source = $2 AND id > $3",
    )
    .bind(writer.sink())
    .bind(source)
    .bind(newest)
    .fetch_one(writer.pool());
    match timeout("count dead letters", STATEMENT_LIMIT, count).await {
        Ok(Ok(count)) => Ok(count),
        Ok(Err(error)) => Err(Refusal::new(503, error.to_string())),
        Err(error) => Err(Refusal::new(503, error.to_string())),
    }
}
