//! Real servers and real faults for surefoot's tests.
//!
//! - [`PgServer`]: a PostgreSQL server of its own per test (temp dir, free loopback port,
//!   `wal_level = logical`), with start, stop, restart, SIGKILL and backend termination.
//! - [`RedisServer`]: the same for Redis, persistence off unless AOF is asked for.
//! - [`FaultProxy`]: a loopback TCP proxy that passes through, cuts, black-holes or delays.
//!
//! Every server and proxy cleans up on drop, also when the test panics: no process and no temp
//! dir is left behind. When the test process is killed outright, a watchdog process per server
//! does that cleanup instead. Nothing here touches the system instances on ports 5432 and 6379.

#![deny(missing_docs)]

mod binaries;
pub mod chaos;
mod error;
mod pg;
mod pg_admin;
mod pg_client;
mod pg_init;
mod pg_tls;
mod port;
mod process;
mod proxy;
mod proxy_conn;
mod redis;
mod watchdog;

pub use binaries::{PG_BIN_ENV, PgBinaries, find_redis_server};
pub use error::{Error, Result};
pub use pg::{PgServer, PgServerBuilder};
pub use pg_client::{PgClient, connect};
pub use port::free_port;
pub use proxy::FaultProxy;
pub use proxy_conn::ProxyMode;
pub use redis::{RedisServer, RedisServerBuilder};
pub use surefoot_core_lifecycle::StopReport;

#[cfg(test)]
mod tests {
    use super::*;

    fn shareable<T: Send + Sync>() {}

    #[test]
    fn handles_can_move_between_tasks() {
        shareable::<PgServer>();
        shareable::<RedisServer>();
        shareable::<FaultProxy>();
        shareable::<PgClient>();
        shareable::<Error>();
    }

    #[test]
    fn debug_shows_the_message_and_its_causes() {
        let error = Error::Io {
            action: "opening log file /x".into(),
            source: std::io::Error::other("disk on fire"),
        };
        assert_eq!(
            format!("{error:?}"),
            "opening log file /x\n  caused by: disk on fire"
        );
    }
}
