//! Whole-pipeline chaos (issue 17): each scenario runs the real `surefoot` binary on a load,
//! injects one kind of fault, and checks with SQL that the targets equal the source and the
//! query's mirror equals PostgreSQL's answer: written / delivered / lost / duplicated, lost and
//! duplicated 0. `cargo xtask chaos N` runs each N times and tabulates.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod harness;

use std::time::Duration;

use harness::{Load, Options, Pipeline};
use tokio::sync::watch;

const LOAD: Load = Load {
    rate: 100,
    poison_every: 0,
};

/// Runs the load while `fault` acts on the pipeline, then stops the load.
async fn under_load(pipeline: &mut Pipeline, load: Load, fault: impl AsyncFnOnce(&mut Pipeline)) {
    let (stop, stopped) = watch::channel(false);
    let writing = load.run(pipeline.source.config("postgres"), stopped);
    let faulting = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        fault(pipeline).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.send_replace(true);
    };
    let (written, ()) = tokio::join!(writing, faulting);
    assert!(written > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_pipeline_walsender_terminated() {
    harness::iterate(|| async {
        let mut pipeline = Pipeline::start(Options::default()).await;
        under_load(&mut pipeline, LOAD, async |p: &mut Pipeline| {
            for _ in 0..3 {
                p.terminate_walsenders().await;
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
        })
        .await;
        pipeline.check("pipeline: walsender terminated").await;
        pipeline.stop_surefoot().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_pipeline_source_postgres_restarted() {
    harness::iterate(|| async {
        let mut pipeline = Pipeline::start(Options::default()).await;
        under_load(&mut pipeline, LOAD, async |p: &mut Pipeline| {
            p.source.restart().await.unwrap();
        })
        .await;
        pipeline.reconnect_admin().await;
        pipeline
            .check("pipeline: source PostgreSQL restarted")
            .await;
        pipeline.stop_surefoot().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_pipeline_surefoot_killed_and_restarted() {
    harness::iterate(|| async {
        let mut pipeline = Pipeline::start(Options::default()).await;
        under_load(&mut pipeline, LOAD, async |p: &mut Pipeline| {
            for _ in 0..2 {
                p.kill_surefoot().await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                p.run_surefoot();
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
        .await;
        pipeline
            .check("pipeline: surefoot SIGKILLed and restarted")
            .await;
        pipeline.stop_surefoot().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_pipeline_target_postgres_restarted() {
    harness::iterate(|| async {
        let mut pipeline = Pipeline::start(Options::default()).await;
        under_load(&mut pipeline, LOAD, async |p: &mut Pipeline| {
            p.target.restart().await.unwrap();
        })
        .await;
        pipeline
            .check("pipeline: target PostgreSQL restarted")
            .await;
        pipeline.stop_surefoot().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_pipeline_redis_down_for_30_s() {
    harness::iterate(|| async {
        let options = Options {
            redis: true,
            ..Options::default()
        };
        let mut pipeline = Pipeline::start(options).await;
        under_load(&mut pipeline, LOAD, async |p: &mut Pipeline| {
            let redis = p.redis.as_mut().unwrap();
            redis.stop().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            redis.start().await.unwrap();
        })
        .await;
        pipeline.check("pipeline: Redis down for 30 s").await;
        pipeline.check_stream().await;
        pipeline.stop_surefoot().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_pipeline_source_and_target_black_holed() {
    harness::iterate(|| async {
        let options = Options {
            proxies: true,
            ..Options::default()
        };
        let mut pipeline = Pipeline::start(options).await;
        under_load(&mut pipeline, LOAD, async |p: &mut Pipeline| {
            for proxy in [&p.source_proxy, &p.target_proxy] {
                let proxy = proxy.as_ref().unwrap();
                proxy.black_hole();
                tokio::time::sleep(Duration::from_secs(8)).await;
                proxy.heal();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
        .await;
        pipeline
            .check("pipeline: source and target black-holed")
            .await;
        pipeline.stop_surefoot().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_pipeline_slow_sink() {
    harness::iterate(|| async {
        let options = Options {
            slow_sink: Some(Duration::from_millis(3)),
            ..Options::default()
        };
        let mut pipeline = Pipeline::start(options).await;
        under_load(&mut pipeline, LOAD, async |_: &mut Pipeline| {
            tokio::time::sleep(Duration::from_secs(6)).await;
        })
        .await;
        pipeline.check("pipeline: slow sink").await;
        pipeline.stop_surefoot().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_pipeline_poison_rows() {
    harness::iterate(|| async {
        let options = Options {
            poison: true,
            ..Options::default()
        };
        let mut pipeline = Pipeline::start(options).await;
        let load = Load {
            poison_every: 50,
            ..LOAD
        };
        under_load(&mut pipeline, load, async |_: &mut Pipeline| {
            tokio::time::sleep(Duration::from_secs(4)).await;
        })
        .await;
        let tally = pipeline.check("pipeline: poison rows").await;
        assert!(
            pipeline.dead_letters().await > 0,
            "no poison row was dead-lettered"
        );
        assert!(tally.delivered > 0);
        pipeline.stop_surefoot().await;
    })
    .await;
}
