//! A custom handler that holds its sink transaction open until the test lets it go, so that a
//! transaction is provably under way at a chosen moment; no sleep decides the order.

use std::sync::Mutex;

use async_trait::async_trait;
use sqlx::PgConnection;
use surefoot_core_model::Position;
use surefoot_sink_postgres_writer::{Handler, HandlerError, HandlerInput, OutboxMessages};
use tokio::sync::oneshot;

/// Logs each change's position into `gate_log (position bigint)` and, on its first call only,
/// says "inside" and then waits, inside the sink transaction, until released.
#[derive(Debug)]
pub(crate) struct Gate {
    inside: Mutex<Option<oneshot::Sender<()>>>,
    release: Mutex<Option<oneshot::Receiver<()>>>,
}

/// The handler, its "inside" signal and its release.
pub(crate) fn gate() -> (Gate, oneshot::Receiver<()>, oneshot::Sender<()>) {
    let (inside_tx, inside_rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel();
    let gate = Gate {
        inside: Mutex::new(Some(inside_tx)),
        release: Mutex::new(Some(release_rx)),
    };
    (gate, inside_rx, release_tx)
}

#[async_trait]
impl Handler for Gate {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        input: HandlerInput<'_>,
        _outbox: &mut OutboxMessages,
    ) -> Result<(), HandlerError> {
        let positions: Vec<i64> = input
            .changes
            .iter()
            .map(|change| match change.position {
                Position::Sequence(n) => n as i64,
                other => panic!("unexpected position {other}"),
            })
            .collect();
        sqlx::query("INSERT INTO gate_log (position) SELECT unnest($1::int8[])")
            .bind(&positions)
            .execute(&mut *conn)
            .await
            .map_err(|e| HandlerError::sql("gate log", e))?;
        let inside = self.inside.lock().unwrap().take();
        if let Some(inside) = inside {
            inside.send(()).unwrap();
            let release = self.release.lock().unwrap().take().unwrap();
            release
                .await
                .map_err(|_| HandlerError::permanent("the test dropped the release"))?;
        }
        Ok(())
    }
}
