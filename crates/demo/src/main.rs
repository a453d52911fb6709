//! `surefoot-demo`: what `cargo xtask demo` runs (see the README).
#![allow(clippy::print_stdout, clippy::print_stderr)] // A demo reports on the terminal.

mod shop;
mod surefoot;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use surefoot_core_lifecycle::signal::shutdown_signal;
use surefoot_pipeline_tests::compare::except_both_ways;
use surefoot_test_support::{PgClient, PgServer, RedisServer};

use crate::surefoot::Surefoot;

/// Between progress lines.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Load transactions per second.
const RATE: u32 = 200;
/// Bound on the bootstrap and on catching up at the end.
const CATCH_UP: Duration = Duration::from_secs(180);

struct Args {
    surefoot: PathBuf,
    config: PathBuf,
    seconds: Option<u64>,
}

fn args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut surefoot, mut config, mut seconds) = (None, None, None);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--surefoot" => surefoot = Some(PathBuf::from(value()?)),
            "--config" => config = Some(PathBuf::from(value()?)),
            "--seconds" => seconds = Some(value()?.parse().map_err(|e| format!("--seconds: {e}"))?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        surefoot: surefoot.ok_or("--surefoot <path of the surefoot binary> is required")?,
        config: config.ok_or("--config <examples/demo.yaml> is required")?,
        seconds,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("demo: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What the demo's servers are.
struct Servers {
    source: PgServer,
    target: PgServer,
    redis: RedisServer,
}

async fn run() -> Result<bool, String> {
    let args = args()?;
    let stop = shutdown_signal().map_err(|e| e.to_string())?;
    tokio::pin!(stop);
    println!("demo: starting throwaway PostgreSQL (source, target) and Redis servers");
    let servers = Servers {
        source: PgServer::new().await.map_err(|e| e.to_string())?,
        target: PgServer::new().await.map_err(|e| e.to_string())?,
        redis: RedisServer::new().await.map_err(|e| e.to_string())?,
    };
    println!(
        "demo: writing the sample shop ({} customers, {} orders)",
        shop::CUSTOMERS,
        shop::ORDERS
    );
    let shop_db = shop::create_source(&servers.source).await?;
    shop::create_target(&servers.target).await?;
    let state = std::env::temp_dir().join(format!("surefoot-demo-{}", std::process::id()));
    std::fs::create_dir_all(&state).map_err(|e| e.to_string())?;
    let api_port = free_port()?;
    let token = format!("demo-token-{:016x}", demo_nonce());
    let env = [
        ("DEMO_STATE_DIR", state.join("state").display().to_string()),
        ("DEMO_SOURCE_PORT", servers.source.port().to_string()),
        ("DEMO_USER", servers.source.user().to_owned()),
        ("DEMO_TARGET_URL", servers.target.url("target")),
        ("DEMO_REDIS_URL", servers.redis.url()),
        ("DEMO_API_PORT", api_port.to_string()),
        ("DEMO_API_TOKEN", token.clone()),
    ];
    let log = state.join("surefoot.log");
    let api = format!("http://127.0.0.1:{api_port}");
    println!(
        "demo: surefoot run -c {} (log: {})",
        args.config.display(),
        log.display()
    );
    let mut surefoot = Surefoot::start(&args.surefoot, &args.config, &env, &log, api, token)?;
    let started = Instant::now();
    let bootstrapped = wait_for_streaming(&mut surefoot, &mut stop).await?;
    if !bootstrapped {
        println!("demo: stopped during the bootstrap; stopping surefoot (SIGTERM)");
        let status = surefoot.stop(Duration::from_secs(60)).await?;
        println!("  surefoot exit           {status}");
        return Ok(status.success());
    }
    println!(
        "demo: streaming; writing {RATE} transactions/s ({} changes each) until {}",
        shop::CHANGES_PER_TRANSACTION,
        args.seconds.map_or("Ctrl-C".to_owned(), |s| format!(
            "{s} s have passed (or Ctrl-C)"
        ))
    );
    let tally = drive(&mut surefoot, &servers, &shop_db, args.seconds, &mut stop).await?;
    finish(surefoot, &servers, &shop_db, tally, started).await
}

/// Shows the bootstrap's progress until the pipeline is ready: false if stopped first.
async fn wait_for_streaming(
    surefoot: &mut Surefoot,
    stop: &mut std::pin::Pin<
        &mut impl Future<Output = surefoot_core_lifecycle::signal::ShutdownSignal>,
    >,
) -> Result<bool, String> {
    let deadline = Instant::now() + CATCH_UP;
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.as_mut() => return Ok(false),
        }
        if let Some(status) = surefoot.exited() {
            return Err(format!(
                "surefoot exited during the start ({status}); see its log"
            ));
        }
        if surefoot.ready().await {
            return Ok(true);
        }
        let detail = surefoot
            .component("shop")
            .await
            .and_then(|(detail, _)| detail);
        println!(
            "  bootstrap: {}",
            detail.unwrap_or_else(|| "starting".to_owned())
        );
        if Instant::now() > deadline {
            return Err("the pipeline was not ready within 180 s; see surefoot's log".to_owned());
        }
    }
}

/// What the load did.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    transactions: i32,
    elapsed: Duration,
}

/// Writes the load and prints progress until the deadline or a signal.
async fn drive(
    surefoot: &mut Surefoot,
    servers: &Servers,
    shop_db: &PgClient,
    seconds: Option<u64>,
    stop: &mut std::pin::Pin<
        &mut impl Future<Output = surefoot_core_lifecycle::signal::ShutdownSignal>,
    >,
) -> Result<Tally, String> {
    let started = Instant::now();
    let deadline = seconds.map(|s| started + Duration::from_secs(s));
    let mut pace = tokio::time::interval(Duration::from_secs(1) / RATE);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    let target = servers
        .target
        .connect("target")
        .await
        .map_err(|e| e.to_string())?;
    let (mut k, mut last_k, mut last_at) = (0, 0, Instant::now());
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        tokio::select! {
            _ = stop.as_mut() => break,
            _ = pace.tick() => {
                k += 1;
                shop::write(shop_db, k).await?;
            }
            _ = progress.tick() => {
                if let Some(status) = surefoot.exited() {
                    return Err(format!("surefoot exited ({status}); see its log"));
                }
                let rate = f64::from(k - last_k) / last_at.elapsed().as_secs_f64();
                (last_k, last_at) = (k, Instant::now());
                print_progress(surefoot, shop_db, &target, rate).await;
            }
        }
    }
    Ok(Tally {
        transactions: k,
        elapsed: started.elapsed(),
    })
}

async fn print_progress(surefoot: &Surefoot, shop_db: &PgClient, target: &PgClient, rate: f64) {
    let lag = slot_lag(shop_db)
        .await
        .map_or("?".to_owned(), |bytes| format!("{bytes} B"));
    let results = target
        .query_one("SELECT count(*) FROM query.region_totals", &[])
        .await
        .map_or("?".to_owned(), |row| row.get::<_, i64>(0).to_string());
    let processed = surefoot
        .component("region_totals")
        .await
        .map_or(0, |(_, processed)| processed);
    println!(
        "  {:>6.0} changes/s written   slot lag {lag:>10}   query: {processed} batches in, {results} result rows",
        rate * shop::CHANGES_PER_TRANSACTION as f64,
    );
}

/// Bytes of WAL the slot has not confirmed.
async fn slot_lag(shop_db: &PgClient) -> Option<i64> {
    shop_db
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint \
             FROM pg_replication_slots WHERE slot_name = 'surefoot_shop'",
            &[],
        )
        .await
        .ok()
        .map(|row| row.get(0))
}

/// Waits for the targets to equal the source, stops surefoot and prints the summary: true when
/// everything matched and surefoot stopped cleanly.
async fn finish(
    surefoot: Surefoot,
    servers: &Servers,
    shop_db: &PgClient,
    tally: Tally,
    started: Instant,
) -> Result<bool, String> {
    println!("demo: load stopped; waiting for the targets to catch up");
    let matched = catch_up(servers, shop_db).await?;
    let lag = slot_lag(shop_db).await;
    let streamed = stream_length(&servers.redis.url()).await;
    println!("demo: stopping surefoot (SIGTERM)");
    let status = surefoot.stop(Duration::from_secs(60)).await?;
    let rate = f64::from(tally.transactions) / tally.elapsed.as_secs_f64().max(0.001);
    println!("\nsummary");
    println!(
        "  ran                     {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "  load                    {} transactions ({} changes), {:.0} transactions/s",
        tally.transactions,
        i64::from(tally.transactions) * shop::CHANGES_PER_TRANSACTION as i64,
        rate
    );
    println!(
        "  slot lag at the end     {}",
        lag.map_or("?".to_owned(), |b| format!("{b} B"))
    );
    println!(
        "  Redis stream entries    {}",
        streamed.map_or("?".to_owned(), |n| n.to_string())
    );
    for (table, equal) in &matched {
        println!(
            "  {table:<24}{}",
            if *equal {
                "equal to the source (EXCEPT both ways)"
            } else {
                "DIFFERS from the source"
            }
        );
    }
    println!("  surefoot exit           {status}");
    Ok(matched.iter().all(|(_, equal)| *equal) && status.success())
}

/// Compares the query's result and both mirrored tables with the source until they match or
/// the bound passes.
async fn catch_up(
    servers: &Servers,
    shop_db: &PgClient,
) -> Result<Vec<(&'static str, bool)>, String> {
    let target = servers.target.connection_string("target");
    let tables = [
        (
            "query.region_totals",
            shop::RESULT_COLUMNS,
            shop::RESULT_TYPES,
        ),
        (
            "customers",
            "id, name, region",
            "id int, name text, region text",
        ),
        (
            "orders",
            "id, customer, amount",
            "id int, customer int, amount int",
        ),
    ];
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let mut results = Vec::new();
        for (table, columns, types) in tables {
            let difference = except_both_ways(shop_db.client(), &target, table, columns, types)
                .await
                .map_err(|e| e.to_string())?;
            results.push((table, difference.is_equal()));
        }
        if results.iter().all(|(_, equal)| *equal) || Instant::now() > deadline {
            return Ok(results);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Entries in the query's Redis stream.
async fn stream_length(url: &str) -> Option<u64> {
    let client = redis::Client::open(url).ok()?;
    let mut connection = client.get_multiplexed_async_connection().await.ok()?;
    redis::cmd("XLEN")
        .arg("surefoot:region_totals")
        .query_async(&mut connection)
        .await
        .ok()
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// A value that differs between runs, for the demo's API token.
fn demo_nonce() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    u64::try_from(nanos % u128::from(u64::MAX)).unwrap_or(0) ^ u64::from(std::process::id())
}
