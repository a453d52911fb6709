//! `surefoot-reconcile`: compares a source table with its mirror by key-range chunk checksums
//! and, with `--repair`, makes the target equal to the source, reporting what differed.
//!
//! ```text
//! SUREFOOT_RECONCILE_SOURCE_URL=postgres://... SUREFOOT_RECONCILE_TARGET_URL=postgres://... \
//!   surefoot-reconcile --source-table public.accounts [--repair] [--json]
//! ```
//!
//! The key defaults to the source table's single-column primary key, the columns to those both
//! tables have (see `surefoot_sink_postgres_writer::reconcile_columns`). Every statement runs
//! under `--statement-timeout`, every connection is acquired within `--connect-timeout`, and
//! the source's sessions are read-only. The URLs are never printed.
//!
//! Exit codes:
//! - `0`: source and target agree, or every difference was repaired (`--repair`);
//! - `2`: differences were found and not repaired (check mode);
//! - `1`: error (invalid arguments, connection, missing table or column, SQL failure); the
//!   message and its causes go to stderr.

use std::error::Error;
use std::fmt;
use std::io::Write;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use surefoot_sink_postgres_writer::{
    Ident, QualifiedName, ReconcileReport, ReconcileSpec, SpecRequest, reconcile, resolve_spec,
};

/// Connections per pool: the run uses one at a time per side.
const MAX_CONNECTIONS: u32 = 2;

type Fallible<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Compares a source table with its mirror by key-range chunk checksums and repairs drift.
///
/// Exit codes: 0 = source and target agree (or every difference was repaired with --repair),
/// 2 = differences found and not repaired, 1 = error.
#[derive(Debug, Parser)]
#[command(name = "surefoot-reconcile", version)]
struct Args {
    /// Source database URL.
    #[arg(long, env = "SUREFOOT_RECONCILE_SOURCE_URL", hide_env_values = true)]
    source_url: String,
    /// Target database URL.
    #[arg(long, env = "SUREFOOT_RECONCILE_TARGET_URL", hide_env_values = true)]
    target_url: String,
    /// Source table, `schema.table` or `table` (in `public`).
    #[arg(long, value_parser = parse_table)]
    source_table: QualifiedName,
    /// Target table [default: the source table's name].
    #[arg(long, value_parser = parse_table)]
    target_table: Option<QualifiedName>,
    /// Key column [default: the source table's single-column primary key].
    #[arg(long, value_parser = parse_ident)]
    key: Option<Ident>,
    /// Columns to compare, comma-separated, the key added if absent [default: the columns both
    /// tables have, in source order].
    #[arg(long, value_delimiter = ',', value_parser = parse_ident)]
    columns: Option<Vec<Ident>>,
    /// Source rows per chunk.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    chunk_rows: u32,
    /// Repair the target (insert missing, update different, delete extra rows); without it,
    /// only report.
    #[arg(long)]
    repair: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Statement timeout in seconds, on every connection.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    statement_timeout: u64,
    /// Seconds to wait for a connection.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    connect_timeout: u64,
}

fn parse_table(text: &str) -> Result<QualifiedName, String> {
    QualifiedName::parse(text).map_err(|e| e.to_string())
}

fn parse_ident(text: &str) -> Result<Ident, String> {
    Ident::parse(text.trim()).map_err(|e| e.to_string())
}

/// An error with what was being done.
#[derive(Debug)]
struct Context {
    what: &'static str,
    source: Box<dyn Error + Send + Sync>,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.what)
    }
}

impl Error for Context {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.source.as_ref())
    }
}

fn context<E: Into<Box<dyn Error + Send + Sync>>>(
    what: &'static str,
) -> impl FnOnce(E) -> Box<dyn Error + Send + Sync> {
    move |e| {
        Box::new(Context {
            what,
            source: e.into(),
        })
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            // Help and version go to stdout, usage errors to stderr; if even that write fails
            // there is nowhere left to say so, and the exit code still tells.
            e.print().ok();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run_in_runtime(args) {
        Ok(code) => code,
        Err(e) => {
            report_error(e.as_ref());
            ExitCode::from(1)
        }
    }
}

fn run_in_runtime(args: Args) -> Fallible<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(context("start the runtime"))?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Fallible<ExitCode> {
    let source = connect(&args, &args.source_url, true)
        .await
        .map_err(context("connect to the source database"))?;
    let target = connect(&args, &args.target_url, false)
        .await
        .map_err(context("connect to the target database"))?;
    let outcome = compare(&args, &source, &target).await;
    close(&args, source).await;
    close(&args, target).await;
    let (spec, report) = outcome?;
    print_report(&args, &spec, &report).map_err(context("write the report"))?;
    let unrepaired = !report.repaired && rows_changed(&report) > 0;
    Ok(if unrepaired {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

async fn compare(
    args: &Args,
    source: &PgPool,
    target: &PgPool,
) -> Fallible<(ReconcileSpec, ReconcileReport)> {
    let request = SpecRequest {
        source: args.source_table.clone(),
        target: args
            .target_table
            .clone()
            .unwrap_or_else(|| args.source_table.clone()),
        key: args.key.clone(),
        columns: args.columns.clone(),
        chunk_rows: args.chunk_rows,
    };
    let spec = resolve_spec(source, target, request)
        .await
        .map_err(context("check the tables"))?;
    let report = reconcile(source, target, &spec, args.repair)
        .await
        .map_err(context("reconcile"))?;
    Ok((spec, report))
}

/// A pool of at most two connections, each with the statement timeout (and read-only on the
/// source), acquired within the connect timeout.
async fn connect(args: &Args, url: &str, read_only: bool) -> Fallible<PgPool> {
    let statement_timeout = format!("{}s", args.statement_timeout);
    let mut settings = vec![("statement_timeout", statement_timeout.as_str())];
    if read_only {
        settings.push(("default_transaction_read_only", "on"));
    }
    let options = PgConnectOptions::from_str(url)?
        .application_name("surefoot-reconcile")
        .options(settings);
    let timeout = Duration::from_secs(args.connect_timeout);
    // One connection outside the pool first, so that a failure reports its cause (refused,
    // authentication, unknown database) where the pool would only say it timed out.
    let probe = tokio::time::timeout(timeout, PgConnection::connect_with(&options))
        .await
        .map_err(|_elapsed| format!("no connection within {} s", args.connect_timeout))??;
    // Dropping it closes the socket; the pool opens its own connections.
    drop(probe);
    Ok(PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(timeout)
        .connect_lazy_with(options))
}

/// Closes the pool's connections, giving up after the connect timeout: the run's outcome is
/// known by then, and the server ends an abandoned session on its own.
async fn close(args: &Args, pool: PgPool) {
    let limit = Duration::from_secs(args.connect_timeout);
    if tokio::time::timeout(limit, pool.close()).await.is_err() {
        tracing::warn!("closing a pool did not finish in time");
    }
}

fn rows_changed(report: &ReconcileReport) -> u64 {
    report.missing + report.different + report.extra
}

/// The report as printed with `--json`: what was compared, then the counts.
#[derive(serde::Serialize)]
struct JsonReport<'a> {
    source: String,
    target: String,
    key: &'a str,
    columns: Vec<&'a str>,
    chunk_rows: u32,
    #[serde(flatten)]
    report: &'a ReconcileReport,
    rows_changed: u64,
}

fn print_report(
    args: &Args,
    spec: &ReconcileSpec,
    report: &ReconcileReport,
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if args.json {
        let json = JsonReport {
            source: spec.source.to_string(),
            target: spec.target.to_string(),
            key: spec.key.as_str(),
            columns: spec.columns.iter().map(Ident::as_str).collect(),
            chunk_rows: spec.chunk_rows,
            report,
            rows_changed: rows_changed(report),
        };
        serde_json::to_writer(&mut out, &json)?;
        writeln!(out)?;
    } else {
        out.write_all(human_report(spec, report).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

fn human_report(spec: &ReconcileSpec, report: &ReconcileReport) -> String {
    let columns: Vec<&str> = spec.columns.iter().map(Ident::as_str).collect();
    let changed = rows_changed(report);
    let verdict = if changed == 0 {
        "source and target agree".to_owned()
    } else if report.repaired {
        format!("repaired {changed} rows")
    } else {
        format!("would change {changed} rows; run with --repair")
    };
    format!(
        "source {} -> target {}, key {}, columns {}, {} rows per chunk\n\
         chunks compared:  {}\n\
         chunks differing: {}\n\
         rows missing:     {}\n\
         rows different:   {}\n\
         rows extra:       {}\n\
         {verdict}\n",
        spec.source,
        spec.target,
        spec.key,
        columns.join(","),
        spec.chunk_rows,
        report.chunks,
        report.chunks_differing,
        report.missing,
        report.different,
        report.extra,
    )
}

fn report_error(error: &(dyn Error + 'static)) {
    let mut message = format!("surefoot-reconcile: error: {error}\n");
    let mut previous = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        // sqlx repeats its source in its own message; say each thing once.
        if !previous.contains(&text) {
            message.push_str(&format!("  caused by: {text}\n"));
        }
        previous = text;
        cause = e.source();
    }
    // If stderr itself cannot be written there is nowhere left to say so; the exit code tells.
    std::io::stderr().write_all(message.as_bytes()).ok();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_parse_with_defaults_and_list_columns() {
        let args = Args::try_parse_from([
            "surefoot-reconcile",
            "--source-url",
            "postgres://a",
            "--target-url",
            "postgres://b",
            "--source-table",
            "app.accounts",
            "--columns",
            "id, owner,balance",
        ])
        .unwrap();
        assert_eq!(args.source_table.to_string(), "app.accounts");
        assert_eq!(args.target_table, None);
        assert_eq!(
            args.columns
                .unwrap()
                .iter()
                .map(Ident::as_str)
                .collect::<Vec<_>>(),
            ["id", "owner", "balance"]
        );
        assert_eq!(
            (
                args.chunk_rows,
                args.statement_timeout,
                args.connect_timeout
            ),
            (1000, 60, 10)
        );
        assert!(!args.repair && !args.json);
    }

    #[test]
    fn zero_chunk_rows_is_refused() {
        let parsed = Args::try_parse_from([
            "surefoot-reconcile",
            "--source-url=x",
            "--target-url=y",
            "--source-table=t",
            "--chunk-rows=0",
        ]);
        assert!(parsed.is_err());
    }

    #[test]
    fn human_report_says_whether_it_repaired() {
        let spec = ReconcileSpec {
            source: QualifiedName::parse("t").unwrap(),
            target: QualifiedName::parse("t").unwrap(),
            key: Ident::parse("id").unwrap(),
            columns: vec![Ident::parse("id").unwrap()],
            chunk_rows: 10,
        };
        let mut report = ReconcileReport {
            chunks: 3,
            chunks_differing: 1,
            missing: 1,
            different: 2,
            extra: 0,
            repaired: false,
        };
        assert!(human_report(&spec, &report).ends_with("would change 3 rows; run with --repair\n"));
        report.repaired = true;
        assert!(human_report(&spec, &report).ends_with("repaired 3 rows\n"));
        assert!(human_report(&spec, &ReconcileReport::default()).contains("agree"));
    }
}
