//! The write load: transactions of five new events and an update of an earlier one, run until
//! told to stop; a transaction that fails (the source restarting) is retried on a new
//! connection, idempotently, so the source's rows are what was written.

use std::time::Duration;

use surefoot_test_support::PgClient;
use tokio::sync::watch;

use super::POISON_AMOUNT;

/// A load's settings.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Transactions per second at most.
    pub rate: u32,
    /// Every this many transactions, one event carries the poison amount (0: never).
    pub poison_every: i32,
}

impl Load {
    /// Writes until `stop` turns true; returns the transactions written.
    pub async fn run(self, server: tokio_postgres::Config, mut stop: watch::Receiver<bool>) -> i32 {
        let server = &server;
        let mut client = connect(server).await;
        let mut pace = tokio::time::interval(Duration::from_secs(1) / self.rate);
        let mut k = 0;
        while !*stop.borrow_and_update() {
            pace.tick().await;
            k += 1;
            let sql = self.transaction(k);
            loop {
                match client.batch_execute(&sql).await {
                    Ok(()) => break,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        client = connect(server).await;
                    }
                }
            }
        }
        k
    }

    fn transaction(self, k: i32) -> String {
        let base = 100_000 + k * 5;
        let amount = |i: i32| {
            if self.poison_every > 0 && k % self.poison_every == 0 && i == 0 {
                POISON_AMOUNT
            } else {
                (k + i) % 50 + 20
            }
        };
        let values: Vec<String> = (0..5)
            .map(|i| format!("({}, 'k{}', {})", base + i, (k + i) % 7, amount(i)))
            .collect();
        format!(
            "BEGIN;
             INSERT INTO events VALUES {} ON CONFLICT (id) DO NOTHING;
             UPDATE events SET amount = amount % 50 + 21 WHERE id = {};
             COMMIT;",
            values.join(", "),
            (k * 37) % 2_000 + 1,
        )
    }
}

/// A connection to the source, retried until the server answers.
async fn connect(server: &tokio_postgres::Config) -> PgClient {
    loop {
        if let Ok(client) = surefoot_test_support::connect(server).await {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
