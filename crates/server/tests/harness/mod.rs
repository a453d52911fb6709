//! Whole-pipeline chaos: the real `surefoot` binary between throwaway PostgreSQL servers (and
//! Redis), a write load on the source, a fault, and an independent checker comparing the
//! source, PostgreSQL's own answer to the query and the targets with SQL.

#![allow(dead_code, unreachable_pub)] // Each chaos test uses part of the harness; it is a test module.

mod load;
mod stream;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use surefoot_pipeline_tests::compare::except_both_ways;
use surefoot_test_support::chaos::{Tally, report};
use surefoot_test_support::{FaultProxy, PgClient, PgServer, RedisServer};
use tokio::process::{Child, Command};

pub use load::Load;

const TOKEN: &str = "chaos-token-0123456789";
/// Bound on the pipeline catching up once the load and the fault are over.
const CATCH_UP: Duration = Duration::from_secs(150);
const QUERY: &str = "SELECT kind, count(*) AS n, sum(amount) AS total FROM events GROUP BY kind";
const RESULT_TYPES: &str = "kind text, n bigint, total bigint";
/// Rows the bootstrap copies.
const SEEDED: i32 = 2_000;
/// The amount the poison scenario's target refuses.
pub const POISON_AMOUNT: i32 = 13;

/// What a scenario needs besides the two PostgreSQL servers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// A Redis stream reaction on the query.
    pub redis: bool,
    /// The source and the target reached through fault proxies.
    pub proxies: bool,
    /// The target refuses rows with `amount = POISON_AMOUNT` (a CHECK constraint).
    pub poison: bool,
    /// Every row the target's events table takes costs it this long (a trigger).
    pub slow_sink: Option<Duration>,
}

/// One iteration's servers and `surefoot` process.
pub struct Pipeline {
    pub source: PgServer,
    pub target: PgServer,
    pub redis: Option<RedisServer>,
    pub source_proxy: Option<FaultProxy>,
    pub target_proxy: Option<FaultProxy>,
    pub admin: PgClient,
    state: tempfile::TempDir,
    config: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    runs: u32,
    api: String,
}

impl Pipeline {
    pub async fn start(options: Options) -> Self {
        let source = PgServer::new().await.unwrap();
        let target = PgServer::new().await.unwrap();
        let redis = if options.redis {
            Some(RedisServer::builder().aof(true).start().await.unwrap())
        } else {
            None
        };
        let admin = source.connect("postgres").await.unwrap();
        admin
            .batch_execute(&format!(
                "CREATE TABLE events (id int PRIMARY KEY, kind text NOT NULL, amount int NOT NULL);
                 INSERT INTO events SELECT g, 'k' || (g % 7), g % 50 + 20 FROM generate_series(1, {SEEDED}) g;
                 CREATE SCHEMA query;
                 CREATE VIEW query.totals AS {QUERY};"
            ))
            .await
            .unwrap();
        target.create_database("target").await.unwrap();
        let copy = target.connect("target").await.unwrap();
        let check = if options.poison {
            format!(" CHECK (amount <> {POISON_AMOUNT})")
        } else {
            String::new()
        };
        copy.batch_execute(&format!(
            "CREATE TABLE events (id int PRIMARY KEY, kind text NOT NULL, amount int NOT NULL{check});
             CREATE SCHEMA query;
             CREATE TABLE query.totals ({RESULT_TYPES}, \"_key.1\" text PRIMARY KEY);"
        ))
        .await
        .unwrap();
        if let Some(delay) = options.slow_sink {
            copy.batch_execute(&format!(
                "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS
                   $$ BEGIN PERFORM pg_sleep({}); RETURN NEW; END $$;
                 CREATE TRIGGER slow BEFORE INSERT OR UPDATE ON events FOR EACH ROW EXECUTE FUNCTION slow();",
                delay.as_secs_f64()
            ))
            .await
            .unwrap();
        }
        let (source_proxy, target_proxy) = if options.proxies {
            let source_addr = ([127, 0, 0, 1], source.port()).into();
            let target_addr = ([127, 0, 0, 1], target.port()).into();
            (
                Some(FaultProxy::start(source_addr).await.unwrap()),
                Some(FaultProxy::start(target_addr).await.unwrap()),
            )
        } else {
            (None, None)
        };
        let state = tempfile::tempdir().unwrap();
        let api_port = free_port();
        let source_port = source_proxy
            .as_ref()
            .map_or(source.port(), FaultProxy::port);
        let target_port = target_proxy
            .as_ref()
            .map_or(target.port(), FaultProxy::port);
        let stream = match &redis {
            Some(redis) => format!(
                "  - kind: redis\n    id: totals-stream\n    from: totals\n    url: {}\n",
                redis.url()
            ),
            None => String::new(),
        };
        let text = format!(
            "state_dir: {state}
sources:
  - kind: postgres
    id: shop
    port: {source_port}
    user: {user}
    database: postgres
    tables: [events]
queries:
  - id: totals
    sql: \"{QUERY}\"
reactions:
  - kind: postgres
    id: totals-mirror
    from: totals
    url: postgres://{tuser}@127.0.0.1:{target_port}/target
  - kind: postgres
    id: events-mirror
    from: shop
    url: postgres://{tuser}@127.0.0.1:{target_port}/target
{stream}api:
  listen: 127.0.0.1:{api_port}
  tokens: [\"{TOKEN}\"]
",
            state = state.path().join("state").display(),
            user = source.user(),
            tuser = target.user(),
        );
        let config = state.path().join("surefoot.yaml");
        std::fs::write(&config, text).unwrap();
        let log = state.path().join("surefoot.log");
        let mut pipeline = Self {
            source,
            target,
            redis,
            source_proxy,
            target_proxy,
            admin,
            state,
            config,
            child: None,
            log,
            runs: 0,
            api: format!("http://127.0.0.1:{api_port}"),
        };
        pipeline.run_surefoot();
        pipeline.wait_until_ready().await;
        pipeline
    }

    /// Starts `surefoot run` (its log appended to the iteration's log file).
    pub fn run_surefoot(&mut self) {
        self.runs += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_surefoot"))
            .args(["run", "-c"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn pid(&self) -> Pid {
        let id = self.child.as_ref().and_then(Child::id).unwrap();
        Pid::from_raw(i32::try_from(id).unwrap())
    }

    /// SIGKILL, then waits for the process to be gone.
    pub async fn kill_surefoot(&mut self) {
        kill(self.pid(), Signal::SIGKILL).unwrap();
        self.child.take().unwrap().wait().await.unwrap();
    }

    /// SIGTERM: the process must exit 0 within the bound.
    pub async fn stop_surefoot(&mut self) {
        kill(self.pid(), Signal::SIGTERM).unwrap();
        let mut child = self.child.take().unwrap();
        let status = tokio::time::timeout(Duration::from_secs(90), child.wait())
            .await
            .expect("surefoot did not exit within 90 s of SIGTERM")
            .unwrap();
        assert!(
            status.success(),
            "surefoot exited with {status}:\n{}",
            self.log_tail()
        );
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    pub async fn wait_until_ready(&self) {
        let deadline = Instant::now() + CATCH_UP;
        let client = reqwest::Client::new();
        loop {
            let ready = client
                .get(format!("{}/health/ready", self.api))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never ready:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Source rows the target lacks or holds otherwise (missing) and target rows the source
    /// lacks or holds otherwise (extra), leaving out the rows whose changes were dead-lettered.
    async fn compare_events(
        &self,
        copy: &str,
        dead: &[i32],
    ) -> surefoot_pipeline_tests::compare::Difference {
        self.admin
            .batch_execute("CREATE EXTENSION IF NOT EXISTS dblink")
            .await
            .unwrap();
        let remote = "SELECT id, kind, amount FROM dblink($1, 'SELECT id, kind, amount FROM events') \
             AS copy(id int, kind text, amount int)";
        let local = "SELECT id, kind, amount FROM events";
        let count = |sql: String| async move {
            self.admin
                .query_one(&sql, &[&copy, &dead])
                .await
                .unwrap()
                .get::<_, i64>(0)
        };
        let missing = count(format!(
            "SELECT count(*) FROM ({local} EXCEPT {remote}) d WHERE NOT id = ANY($2::int[])"
        ))
        .await;
        let extra = count(format!(
            "SELECT count(*) FROM ({remote} EXCEPT {local}) d WHERE NOT id = ANY($2::int[])"
        ))
        .await;
        surefoot_pipeline_tests::compare::Difference { missing, extra }
    }

    /// A new admin connection (after the source restarted).
    pub async fn reconnect_admin(&mut self) {
        let deadline = Instant::now() + CATCH_UP;
        loop {
            if let Ok(admin) = self.source.connect("postgres").await {
                self.admin = admin;
                return;
            }
            assert!(Instant::now() < deadline, "the source never came back");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The dead letters the API lists.
    pub async fn api_dead_letters(&self) -> Vec<serde_json::Value> {
        reqwest::Client::new()
            .get(format!(
                "{}/api/v1/dead-letters?reaction=events-mirror",
                self.api
            ))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Rows the events mirror dead-lettered.
    pub async fn dead_letters(&self) -> i64 {
        let target = self.target.connect("target").await.unwrap();
        dead_lettered(&target).await
    }

    /// The Redis stream's diffs, folded by position, equal the query's current result.
    pub async fn check_stream(&self) {
        let deadline = Instant::now() + CATCH_UP;
        let client = reqwest::Client::new();
        let url = self.redis.as_ref().unwrap().url();
        loop {
            let result: Vec<serde_json::Value> = client
                .get(format!("{}/api/v1/queries/totals/results", self.api))
                .bearer_auth(TOKEN)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let folded = stream::fold(&stream::batches(&url, "surefoot:totals").await);
            if stream::sorted(result.clone()) == folded {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis stream never added up to the result"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Terminates the source's walsenders (the replication connections).
    pub async fn terminate_walsenders(&self) -> i64 {
        self.admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_replication",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// Waits until the targets match the source (or the bound passes), then counts: written
    /// (the source's rows), delivered (rows the target holds as the source does), lost
    /// (source rows the target lacks or holds otherwise, less those dead-lettered), duplicated
    /// (applied-batch records that overlap, plus target rows the source lacks). Asserts the
    /// query's mirror equals PostgreSQL's answer, and reports the tally.
    pub async fn check(&mut self, scenario: &str) -> Tally {
        let copy = self.target.connection_string("target");
        let deadline = Instant::now() + CATCH_UP;
        let target = loop {
            if let Ok(target) = self.target.connect("target").await {
                break target;
            }
            assert!(Instant::now() < deadline, "the target never answered");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let (events, totals, dead) = loop {
            let dead = dead_ids(&target).await;
            let events = self.compare_events(&copy, &dead).await;
            let totals = except_both_ways(
                self.admin.client(),
                &copy,
                "query.totals",
                "kind, n, total",
                RESULT_TYPES,
            )
            .await
            .unwrap();
            if (events.missing == 0 && events.extra == 0 && totals.is_equal())
                || Instant::now() > deadline
            {
                break (events, totals, dead.len() as i64);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let written: i64 = self
            .admin
            .query_one("SELECT count(*) FROM events", &[])
            .await
            .unwrap()
            .get(0);
        let applied =
            surefoot_pipeline_tests::applied::applied(target.client(), "events-mirror", "shop")
                .await
                .unwrap();
        let tally = Tally {
            written: written as u64,
            delivered: (written - events.missing - dead).max(0) as u64,
            lost: events.missing as u64,
            duplicated: applied.overlapping + events.extra as u64,
        };
        eprintln!(
            "{scenario}: written {} delivered {} lost {} duplicated {} (dead letters {dead}, \
             query mirror missing {} extra {}, surefoot runs {})",
            tally.written,
            tally.delivered,
            tally.lost,
            tally.duplicated,
            totals.missing,
            totals.extra,
            self.runs
        );
        report(scenario, &tally).unwrap();
        if applied.overlapping > 0 {
            eprintln!(
                "{scenario}: overlapping applied records: {}",
                overlapping_records(&target).await
            );
        }
        assert!(
            totals.is_equal(),
            "{scenario}: the query's mirror differs: {totals:?}\n{}",
            self.log_tail()
        );
        assert_eq!(tally.lost, 0, "{scenario}: rows lost\n{}", self.log_tail());
        assert_eq!(
            tally.duplicated,
            0,
            "{scenario}: rows duplicated\n{}",
            self.log_tail()
        );
        tally
    }
}

/// The applied-batch records of the events mirror that overlap an earlier one, with it.
async fn overlapping_records(target: &PgClient) -> String {
    let rows = target
        .query(
            "SELECT batches FROM surefoot_writer.applied WHERE sink = 'events-mirror' AND source = 'shop'",
            &[],
        )
        .await
        .unwrap();
    let mut records = Vec::new();
    for row in rows {
        let bytes: Vec<u8> = row.get(0);
        records.extend(surefoot_pipeline_tests::applied::unpack(&bytes).unwrap());
    }
    records.sort();
    let mut shown = Vec::new();
    let mut previous: Option<surefoot_pipeline_tests::applied::Record> = None;
    for record in records {
        if let Some(last) = previous
            && record.first <= last.last
        {
            shown.push(format!("{last:?} then {record:?}"));
        }
        previous = Some(record);
    }
    shown.join("; ")
}

/// Ids of the rows whose changes the events mirror dead-lettered.
async fn dead_ids(target: &PgClient) -> Vec<i32> {
    target
        .query(
            "SELECT DISTINCT coalesce(change->'after'->'id', change->'key'->'id')->>'value' \
             FROM surefoot_writer.dead_letter WHERE sink = 'events-mirror'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .filter_map(|row| row.get::<_, Option<String>>(0)?.parse().ok())
        .collect()
}

/// Rows dead-lettered.
async fn dead_lettered(target: &PgClient) -> i64 {
    dead_ids(target).await.len() as i64
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `scenario` `iterations()` times.
pub async fn iterate<F, Fut>(scenario: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    for _ in 0..surefoot_test_support::chaos::iterations() {
        scenario().await;
    }
}
