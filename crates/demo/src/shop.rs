//! The sample shop: its schema and data in the source, the targets' tables, and the write
//! load.

use surefoot_test_support::{PgClient, PgServer};

/// Customers in the sample.
pub(crate) const CUSTOMERS: i32 = 5_000;
/// Orders in the sample, before the load.
pub(crate) const ORDERS: i32 = 200_000;
/// Changes per load transaction.
pub(crate) const CHANGES_PER_TRANSACTION: u64 = 4;

/// The query of examples/demo.yaml, as PostgreSQL answers it.
pub(crate) const QUERY: &str = "SELECT c.region, count(*) AS orders, sum(o.amount) AS revenue, \
    max(o.amount) AS largest FROM orders o JOIN customers c ON o.customer = c.id GROUP BY c.region";
/// The result's columns and types, for the comparison.
pub(crate) const RESULT_COLUMNS: &str = "region, orders, revenue, largest";
pub(crate) const RESULT_TYPES: &str = "region text, orders bigint, revenue bigint, largest bigint";

const TABLES: &str = "
    CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, region text NOT NULL);
    CREATE TABLE orders (id int PRIMARY KEY, customer int NOT NULL, amount int NOT NULL);";

/// Creates the `shop` database with its sample rows, and PostgreSQL's own view of the query.
pub(crate) async fn create_source(server: &PgServer) -> Result<PgClient, String> {
    server
        .create_database("shop")
        .await
        .map_err(|e| e.to_string())?;
    let shop = server.connect("shop").await.map_err(|e| e.to_string())?;
    shop.batch_execute(&format!(
        "{TABLES}
         INSERT INTO customers SELECT g, 'customer ' || g,
           (ARRAY['north', 'south', 'east', 'west', 'centre'])[g % 5 + 1]
           FROM generate_series(1, {CUSTOMERS}) g;
         INSERT INTO orders SELECT g, g % {CUSTOMERS} + 1, (g * 37) % 1000 + 1
           FROM generate_series(1, {ORDERS}) g;
         CREATE SCHEMA query;
         CREATE VIEW query.region_totals AS {QUERY};"
    ))
    .await
    .map_err(|e| e.to_string())?;
    Ok(shop)
}

/// Creates the `target` database: the mirrored tables and the query's result table.
pub(crate) async fn create_target(server: &PgServer) -> Result<PgClient, String> {
    server
        .create_database("target")
        .await
        .map_err(|e| e.to_string())?;
    let target = server.connect("target").await.map_err(|e| e.to_string())?;
    target
        .batch_execute(&format!(
            "{TABLES}
             CREATE SCHEMA query;
             CREATE TABLE query.region_totals ({RESULT_TYPES}, \"_key.1\" text PRIMARY KEY);"
        ))
        .await
        .map_err(|e| e.to_string())?;
    Ok(target)
}

/// Load transaction `k`: a new order, an order changed and moved to another customer, an
/// order deleted, a customer moved to another region.
pub(crate) async fn write(shop: &PgClient, k: i32) -> Result<(), String> {
    let pick = |factor: i64| i64::from(k) * factor % i64::from(ORDERS) + 1;
    shop.batch_execute(&format!(
        "BEGIN;
         INSERT INTO orders VALUES ({}, {}, {});
         UPDATE orders SET amount = amount % 1000 + 1, customer = {} WHERE id = {};
         DELETE FROM orders WHERE id = {};
         UPDATE customers SET region = (ARRAY['north', 'south', 'east', 'west', 'centre'])[{k} % 5 + 1]
           WHERE id = {};
         COMMIT;",
        ORDERS + k,
        k % CUSTOMERS + 1,
        k % 997 + 1,
        (k * 7) % CUSTOMERS + 1,
        pick(7_919),
        pick(104_729),
        (k * 13) % CUSTOMERS + 1,
    ))
    .await
    .map_err(|e| e.to_string())
}
