//! Reactions through the API: added to a running query (they join with a snapshot of its
//! result, see `segment::join`), and held (paused, stopped) or opened again.

use serde_norway::{Mapping, Value};
use surefoot_core_lifecycle::timeout;
use surefoot_sink_postgres_writer::PostgresWriter;
use tokio::sync::oneshot;

use super::{Manager, Refusal, body, read_by};
use crate::config::ReactionConfig;
use crate::run::error::chain;
use crate::run::plan::query_reaction;
use crate::run::registry::Kind;
use crate::run::segment::{Command, Hold, ReactionSpec};

impl Manager {
    /// Pauses, stops or opens (starts, resumes) reaction `id`; answers `true` once the
    /// reaction carried it out, `false` if it did not within the stop deadline (it will once
    /// the batch in hand is done, or once it runs again).
    pub async fn hold_reaction(&self, id: &str, hold: Hold) -> Result<bool, Refusal> {
        if !self.managed().reactions.contains_key(id) {
            return Err(Refusal::new(404, format!("no reaction `{id}`")));
        }
        let mut seen = self
            .inner
            .holds
            .set(id, hold)
            .ok_or_else(|| Refusal::new(503, format!("reaction `{id}` has not started")))?;
        tracing::info!(reaction = %id, ?hold, "reaction hold set through the API");
        let carried_out = seen.wait_for(|seen| *seen == hold);
        Ok(matches!(
            tokio::time::timeout(self.inner.stop_deadline, carried_out).await,
            Ok(Ok(_))
        ))
    }

    /// Adds reaction `id` from `body` (YAML or JSON, as in the file's `reactions`), validated
    /// like the file; it must read a query, whose current result it is sent first. A
    /// PostgreSQL target is connected (and migrated) before the answer, so one that cannot be
    /// reached is refused rather than retried in the background.
    pub async fn add_reaction(&self, id: &str, body: &str) -> Result<(), Refusal> {
        let reaction = self.parse_reaction(id, body)?;
        let (query, segment) = {
            let managed = self.managed();
            if managed.reactions.contains_key(id) {
                return Err(Refusal::new(409, format!("reaction `{id}` exists")));
            }
            let from = reaction.from();
            let query = managed.queries.get(from).map(|entry| entry.config.clone());
            let query = query.ok_or_else(|| {
                Refusal::new(
                    422,
                    format!("from: no query `{from}` (a reaction added at runtime reads a query)"),
                )
            })?;
            let segment = managed.segments.get(from).cloned();
            (query, segment)
        };
        let segment = segment
            .ok_or_else(|| Refusal::new(503, format!("query `{}` is not running", query.id)))?;
        let (_, catalog) = read_by(&query, &self.sources().0);
        let spec = query_reaction(&reaction, &query, &catalog)
            .map_err(|error| Refusal::new(422, chain(&error)))?;
        if let ReactionSpec::Postgres { config, .. } = &spec {
            let connect = PostgresWriter::builder((**config).clone()).connect();
            match timeout(
                "connect the added writer",
                self.inner.stop_deadline,
                connect,
            )
            .await
            {
                Ok(Ok(_writer)) => {}
                Ok(Err(error)) => return Err(Refusal::new(422, format!("url: {}", chain(&error)))),
                Err(error) => return Err(Refusal::new(422, format!("url: {error}"))),
            }
        }
        self.inner.registry.add(id, Kind::Reaction);
        self.managed().reactions.insert(id.to_owned(), reaction);
        let (reply, done) = oneshot::channel();
        let not_running = || Refusal::new(503, format!("query `{}` is not running", query.id));
        let added = match segment
            .send(Command::AddReaction(Box::new(spec), reply))
            .await
        {
            Ok(()) => match timeout("add reaction", self.inner.stop_deadline * 2, done).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(reason))) => Err(Refusal::new(503, reason)),
                Ok(Err(_)) => Err(not_running()),
                Err(error) => Err(Refusal::new(504, error.to_string())),
            },
            Err(_) => Err(not_running()),
        };
        if added.is_err() {
            self.managed().reactions.remove(id);
            self.inner.registry.remove(id);
        }
        added
    }

    /// The body as a one-reaction configuration (with the query it reads), checked like the
    /// file.
    fn parse_reaction(&self, id: &str, body: &str) -> Result<ReactionConfig, Refusal> {
        let reaction = body::mapping_with_id(id, body)?;
        let from = reaction
            .get("from")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let sql = self
            .managed()
            .queries
            .get(from)
            .map(|entry| entry.config.sql.clone())
            .ok_or_else(|| {
                Refusal::new(
                    422,
                    format!("from: no query `{from}` (a reaction added at runtime reads a query)"),
                )
            })?;
        let mut query = Mapping::new();
        query.insert("id".into(), from.into());
        query.insert("sql".into(), sql.into());
        let sections = vec![
            ("queries", body::one(query)),
            ("reactions", body::one(reaction)),
        ];
        body::parse_as_file(sections, "reactions[0].")?
            .reactions
            .into_iter()
            .next()
            .ok_or_else(|| Refusal::new(422, "the body holds no reaction"))
    }
}
