//! `surefoot-writer-replay <database-url>`: replays the change log in table `replay_source`
//! (`seq`, `tx`, `tbl`, `op`, `id`, `body`) through a writer, resuming after its checkpoint.
//!
//! A deterministic source for crash tests and demos: kill it at any moment (SIGKILL included),
//! start it again, and it continues where the last commit left off. Table `items` is mirrored
//! by key `id`; table `ledger` is appended to the event table. Exits 0 once the log is applied.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use surefoot_core_lifecycle::CancellationToken;
use surefoot_core_model::{
    AckToken, Batch, BatchSender, Change, Position, Row, SourceId, TableRef, Value, batch_channel,
};
use surefoot_sink_postgres_writer::{ApplyMode, PostgresWriter, TableConfig, WriterConfig};

/// The source id the replayed changes carry.
const SOURCE: &str = "replay-source";
/// Source transactions read per query.
const TXS_PER_READ: i64 = 500;

type Fallible<T> = Result<T, Box<dyn Error + Send + Sync>>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Fallible<()> {
    let url = std::env::args()
        .nth(1)
        .ok_or("usage: surefoot-writer-replay <database-url>")?;
    let mut config = WriterConfig::new("replay", url);
    config.batch.max_rows = 2_000;
    config.batch.max_latency = Duration::from_millis(5);
    config.pool.max_connections = 3;
    let items = TableConfig::new(
        TableRef::new("public", "items"),
        ApplyMode::Mirror {
            key: vec!["id".into()],
        },
    );
    let ledger = TableConfig::new(TableRef::new("public", "ledger"), ApplyMode::Append);
    let writer = PostgresWriter::builder(config.table(items).table(ledger))
        .connect()
        .await?;
    let after = match writer.checkpoint(SOURCE).await? {
        Some(Position::Sequence(seq)) => seq,
        Some(other) => return Err(format!("unexpected checkpoint {other}").into()),
        None => 0,
    };
    let (sender, receiver) = batch_channel(64);
    let (read, applied) = tokio::join!(
        read_log(&writer, after, sender),
        writer.run(receiver, CancellationToken::new())
    );
    read?;
    applied?;
    writer.pool().close().await;
    Ok(())
}

/// Sends every source transaction after `after`, in order, one batch each.
async fn read_log(writer: &PostgresWriter, mut after: u64, output: BatchSender) -> Fallible<()> {
    loop {
        let rows: Vec<(i64, i64, String, String, i64, Option<String>)> = sqlx::query_as(
            "SELECT seq, tx, tbl, op, id, body FROM replay_source WHERE seq > $1 AND tx < \
             (SELECT tx FROM replay_source WHERE seq > $1 ORDER BY seq LIMIT 1) + $2 \
             ORDER BY seq",
        )
        .bind(i64::try_from(after)?)
        .bind(TXS_PER_READ)
        .fetch_all(writer.pool())
        .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = u64::try_from(last.0)?;
        let mut changes = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            changes.push(change(row)?);
            let ends_tx = rows.get(index + 1).is_none_or(|next| next.1 != row.1);
            if ends_tx {
                output.send(batch(std::mem::take(&mut changes))?).await?;
            }
        }
    }
}

fn change(row: &(i64, i64, String, String, i64, Option<String>)) -> Fallible<Change> {
    let (seq, _tx, tbl, op, id, body) = row;
    let position = Position::Sequence(u64::try_from(*seq)?);
    let table = TableRef::new("public", tbl.as_str());
    let body = body.clone().map_or(Value::Null, Value::Text);
    let values = Row::new().with("id", Value::Int64(*id)).with("body", body);
    Ok(match op.as_str() {
        "delete" => Change::delete(position, table, Some(values.project(&["id"])), None),
        "update" => Change::update(position, table, None, None, values),
        _ => Change::insert(position, table, values),
    })
}

fn batch(changes: Vec<Change>) -> Fallible<Batch> {
    let first = changes.first().ok_or("empty transaction")?.position;
    let last = changes.last().ok_or("empty transaction")?.position;
    Ok(Batch {
        source: SourceId::new(SOURCE),
        first,
        last,
        commit_time: None,
        changes: Arc::from(changes),
        // Nobody upstream waits: the writer's checkpoint is the resume point.
        ack: AckToken::detached(),
    })
}
