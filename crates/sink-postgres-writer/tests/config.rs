#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::time::Duration;

use surefoot_core_lifecycle::{Backoff, RetryPolicy};
use surefoot_core_model::TableRef;
use surefoot_sink_postgres_writer::{
    ApplyMode, ColumnRule, OutboxConfig, PostgresWriter, Rule, TableConfig, WriterConfig,
    WriterError,
};

fn valid() -> WriterConfig {
    WriterConfig::new("orders", "postgres://app@127.0.0.1:5432/app").table(TableConfig::new(
        TableRef::new("public", "orders"),
        ApplyMode::Mirror {
            key: vec!["id".into()],
        },
    ))
}

#[test]
fn w_10_valid_defaults_pass() {
    valid().validate().unwrap();
}

#[test]
fn w_10_invalid_configuration_lists_every_problem_with_its_path() {
    let mut config = WriterConfig::new("", "mysql://x");
    config.application_name.clear();
    config.pool.max_connections = 0;
    config.pool.min_connections = 3;
    config.pool.acquire_timeout = Duration::ZERO;
    config.pool.statement_timeout = Duration::ZERO;
    config.batch.max_rows = 0;
    config.batch.max_bytes = 0;
    config.batch.max_latency = Duration::ZERO;
    config.max_rows_per_second = Some(0);
    config.retry = RetryPolicy::new(Backoff::new(Duration::from_secs(2), Duration::from_secs(1)));
    let orders = TableRef::new("public", "orders");
    let mut mirror = TableConfig::new(orders.clone(), ApplyMode::Mirror { key: vec![] });
    mirror.target = Some("x".repeat(70));
    mirror.publish = Some(String::new());
    mirror.rules = vec![ColumnRule::new(
        "amount",
        Rule::Range {
            min: Some(5.0),
            max: Some(1.0),
        },
    )];
    let twice = TableConfig::new(
        orders,
        ApplyMode::Custom {
            handler: String::new(),
        },
    );
    let bad_key = TableConfig::new(
        TableRef::new("public", "t"),
        ApplyMode::Mirror {
            key: vec![String::new()],
        },
    );
    config.tables = vec![mirror, twice, bad_key];
    let mut outbox = OutboxConfig::new("http://redis");
    outbox.batch_size = 0;
    outbox.poll_interval = Duration::ZERO;
    config.outbox = Some(outbox);
    let problems = config.validate().unwrap_err().problems;
    let expected = [
        "sink: must not be empty",
        "database_url: must start with postgres:// or postgresql://",
        "application_name: must not be empty",
        "pool.max_connections: must be more than 0",
        "pool.min_connections: must not exceed pool.max_connections",
        "pool.acquire_timeout: must be more than 0",
        "pool.statement_timeout: must be more than 0",
        "batch.max_rows: must be more than 0",
        "batch.max_bytes: must be more than 0",
        "batch.max_latency: must be more than 0",
        "max_rows_per_second: must be more than 0, or unlimited",
        "retry.backoff: base must not exceed cap",
        "tables[0].target: `xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx` is longer than 63 bytes",
        "tables[0].mode.key: list at least one column",
        "tables[0].publish: stream name must not be empty",
        "tables[0].rules[0].range: min must not exceed max",
        "tables[1].source: listed twice",
        "tables[1].mode.handler: must not be empty",
        "tables[2].mode.key[0]: must not be empty",
        "outbox.redis_url: must start with redis:// or rediss://",
        "outbox.batch_size: must be more than 0",
        "outbox.poll_interval: must be more than 0",
    ];
    assert_eq!(problems, expected);
    let message = config.validate().unwrap_err().to_string();
    assert!(message.contains("pool.max_connections"), "{message}");
}

#[test]
fn w_10_publishing_without_an_outbox_is_a_problem() {
    let mut config = valid();
    config.tables[0].publish = Some("orders".into());
    let problems = config.validate().unwrap_err().problems;
    assert_eq!(problems, ["outbox: required when a table publishes"]);
    config.tables.clear();
    config.tables.push(TableConfig::new(
        TableRef::new("public", "t"),
        ApplyMode::Append,
    ));
    config.validate().unwrap();
    config.tables.clear();
    assert_eq!(
        config.validate().unwrap_err().problems,
        ["tables: list at least one table"]
    );
}

#[tokio::test]
async fn w_10_unregistered_handler_is_refused_before_connecting() {
    let mut config = valid();
    config.tables[0].mode = ApplyMode::Custom {
        handler: "cascade".into(),
    };
    let error = PostgresWriter::builder(config).connect().await.unwrap_err();
    let WriterError::Config(error) = error else {
        panic!("not a configuration error: {error}");
    };
    assert_eq!(
        error.problems,
        ["tables[0].mode.handler: no handler named `cascade` is registered"]
    );
}
