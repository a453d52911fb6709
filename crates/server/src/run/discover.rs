//! The tables a PostgreSQL source streams, with their columns and primary keys, read from the
//! server's catalog: what queries are planned over and mirrors keyed by.

use std::time::Duration;

use surefoot_core_lifecycle::timeout;
use surefoot_core_model::{SourceId, TableRef};
use surefoot_query::TableSchema;
use surefoot_source_postgres::PostgresSourceConfig;

use super::error::{RunError, chain};

/// Bound on the whole discovery (connect and both queries).
const DISCOVERY_LIMIT: Duration = Duration::from_secs(30);

const TABLES: &str = "
SELECT n.nspname::text, c.relname::text,
  (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
     WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
  (SELECT array_agg(a.attname::text ORDER BY k.ord)
     FROM pg_index i, unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
     JOIN pg_attribute a ON a.attnum = k.attnum
     WHERE i.indrelid = c.oid AND i.indisprimary AND a.attrelid = c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
  AND ($1::text[] IS NULL OR (n.nspname || '.' || c.relname) = ANY($1))
ORDER BY 1, 2";

const PUBLISHED: &str = "SELECT schemaname::text || '.' || tablename::text FROM pg_publication_tables WHERE pubname = $1";

/// The source's tables: those configured, else those of its publication if it exists, else
/// every table of the database (the publication will be `FOR ALL TABLES`). Tables without a
/// primary key are left out, with a warning: a change to them cannot be keyed.
pub(crate) async fn discover(
    config: &PostgresSourceConfig,
    configured: &[String],
) -> Result<Vec<TableSchema>, RunError> {
    let work = discover_unbounded(config, configured);
    timeout("discovering the source's tables", DISCOVERY_LIMIT, work)
        .await
        .map_err(|error| RunError::source(&config.id, chain(&error)))?
}

async fn discover_unbounded(
    config: &PostgresSourceConfig,
    configured: &[String],
) -> Result<Vec<TableSchema>, RunError> {
    let id = &config.id;
    let mut sql = config.sql_config(&format!("surefoot-{id}-discovery"));
    let tls = config
        .tls
        .connector(&mut sql)
        .map_err(|error| RunError::source(id, chain(&error)))?;
    let (client, connection) = sql
        .connect(tls)
        .await
        .map_err(|error| RunError::source(id, chain(&error)))?;
    let query = async {
        let mut names: Option<Vec<String>> = (!configured.is_empty()).then(|| {
            configured
                .iter()
                .map(|t| {
                    if t.contains('.') {
                        t.clone()
                    } else {
                        format!("public.{t}")
                    }
                })
                .collect()
        });
        if names.is_none() {
            let published = client
                .query(PUBLISHED, &[&config.publication.as_str()])
                .await?;
            if !published.is_empty() {
                names = Some(published.iter().map(|row| row.get(0)).collect());
            }
        }
        client.query(TABLES, &[&names]).await
    };
    let rows = tokio::select! {
        rows = query => rows.map_err(|error| RunError::source(id, chain(&error)))?,
        ended = connection => {
            let reason = match ended {
                Ok(()) => "the connection closed".to_owned(),
                Err(error) => error.to_string(),
            };
            return Err(RunError::source(id, reason));
        }
    };
    let mut schemas = Vec::new();
    for row in rows {
        let (schema, name): (String, String) = (row.get(0), row.get(1));
        let columns: Vec<String> = row.get::<_, Option<Vec<String>>>(2).unwrap_or_default();
        let Some(key) = row.get::<_, Option<Vec<String>>>(3) else {
            tracing::warn!(source = %id, table = %format!("{schema}.{name}"),
                "table has no primary key: left out of queries and mirrors");
            continue;
        };
        let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
        let key: Vec<&str> = key.iter().map(String::as_str).collect();
        schemas.push(
            TableSchema::new(
                TableRef::new(schema.as_str(), name.as_str()),
                &columns,
                &key,
            )
            .from_source(SourceId::new(id.as_str())),
        );
    }
    Ok(schemas)
}
