//! Progress lines for long work: a bootstrap's rows copied of the planner's estimate, with
//! its rate and the time left at that rate; and a source catching up on a backlog, with how
//! far behind the server's WAL it is.

use std::fmt;
use std::time::{Duration, Instant};

/// A source this far behind the server's WAL is catching up, and says so.
const BEHIND_BYTES: u64 = 16 * 1024 * 1024;
/// How often a line about the same work is logged at most.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// Whether a source is catching up, from its lag samples.
#[derive(Debug)]
pub(crate) struct CatchUp {
    behind: bool,
    logged: Option<Instant>,
}

impl CatchUp {
    /// Not behind.
    pub(crate) fn new() -> Self {
        Self {
            behind: false,
            logged: None,
        }
    }

    /// Takes the lag sampled now; logs a line while behind (at most every few seconds) and
    /// one when caught up.
    pub(crate) fn sample(&mut self, id: &str, lag_bytes: Option<u64>) {
        let Some(lag) = lag_bytes else {
            return;
        };
        if lag >= BEHIND_BYTES {
            if self.logged.is_none_or(|at| at.elapsed() >= LINE_EVERY) {
                let mib = lag as f64 / (1024.0 * 1024.0);
                tracing::info!(source = %id, lag_bytes = lag,
                    "catching up: {mib:.1} MiB of WAL behind the server");
                self.logged = Some(Instant::now());
            }
            self.behind = true;
        } else if self.behind {
            tracing::info!(source = %id, lag_bytes = lag, "caught up with the server's WAL");
            self.behind = false;
            self.logged = None;
        }
    }
}

/// Where a bootstrap is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Progress {
    /// Rows copied so far.
    pub(crate) rows: u64,
    /// About how many rows the snapshot holds, once known.
    pub(crate) estimated: Option<u64>,
    /// Since the copy began.
    pub(crate) elapsed: Duration,
}

impl Progress {
    /// Rows per second so far.
    fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(0.001)
    }

    /// Percent of the estimate copied (an estimate: it may pass 100).
    fn percent(&self) -> Option<f64> {
        self.estimated
            .filter(|estimated| *estimated > 0)
            .map(|estimated| self.rows as f64 * 100.0 / estimated as f64)
    }

    /// Seconds left at the rate so far, if the estimate is known and not yet reached.
    fn seconds_left(&self) -> Option<u64> {
        let left = self.estimated?.checked_sub(self.rows)?;
        let rate = self.rate();
        (rate > 0.0).then(|| (left as f64 / rate).ceil() as u64)
    }

    /// Logs the progress line of source `id`.
    pub(crate) fn log(&self, id: &str) {
        tracing::info!(
            source = %id,
            rows = self.rows,
            estimated_rows = self.estimated,
            rows_per_second = self.rate().round() as u64,
            seconds_left = self.seconds_left(),
            "bootstrap: {self}"
        );
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rows copied", self.rows)?;
        if let (Some(estimated), Some(percent)) = (self.estimated, self.percent()) {
            write!(f, " of about {estimated} ({percent:.0}%)")?;
        }
        write!(f, ", {:.0} rows/s", self.rate())?;
        if let Some(left) = self.seconds_left() {
            write!(f, ", about {left} s left")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_rows_of_the_estimate_the_rate_and_the_time_left() {
        let progress = Progress {
            rows: 50_000,
            estimated: Some(200_000),
            elapsed: Duration::from_secs(5),
        };
        assert_eq!(
            progress.to_string(),
            "50000 rows copied of about 200000 (25%), 10000 rows/s, about 15 s left"
        );
    }

    #[test]
    fn without_an_estimate_or_past_it_no_time_left_is_claimed() {
        let unknown = Progress {
            rows: 10,
            estimated: None,
            elapsed: Duration::from_secs(1),
        };
        assert_eq!(unknown.to_string(), "10 rows copied, 10 rows/s");
        let past = Progress {
            rows: 120,
            estimated: Some(100),
            elapsed: Duration::from_secs(2),
        };
        assert_eq!(
            past.to_string(),
            "120 rows copied of about 100 (120%), 60 rows/s"
        );
    }
}
