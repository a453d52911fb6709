//! Unit tests of liveness: the verdicts, and the wait that checks a silence with the server.

use std::collections::VecDeque;
use std::sync::Mutex;

use surefoot_core_lifecycle::Classify;

use super::*;
use crate::transport::CloseOutcome;

/// A stream that never sends anything.
#[derive(Debug)]
struct Silent;

#[async_trait]
impl ReplicationTransport for Silent {
    async fn recv(&mut self) -> Result<Option<StreamEvent>, SourceError> {
        std::future::pending().await
    }

    fn confirm(&self, _flush: Lsn) {}

    async fn close(
        self: Box<Self>,
        _final_flush: Option<Lsn>,
        _deadline: Duration,
    ) -> Result<CloseOutcome, SourceError> {
        Ok(CloseOutcome::Clean)
    }
}

/// Answers checks from a script, then says the walsender is gone.
struct Scripted(Mutex<VecDeque<Result<Option<WalsenderProgress>, SourceError>>>);

#[async_trait]
impl ProgressProbe for Scripted {
    async fn walsender(&self) -> Result<Option<WalsenderProgress>, SourceError> {
        let mut script = self.0.lock().unwrap();
        script.pop_front().unwrap_or(Ok(None))
    }
}

async fn silence(
    script: Vec<Result<Option<WalsenderProgress>, SourceError>>,
) -> (SourceError, u64) {
    let probe = Scripted(Mutex::new(script.into()));
    let survived = AtomicU64::new(0);
    let metrics = SourceMetrics::global("liveness-test");
    let mut liveness = Liveness::new(Duration::from_secs(5), &probe, &survived, &metrics);
    let error = liveness.recv(&mut Silent).await.unwrap_err();
    (error, survived.load(Ordering::Relaxed))
}

#[tokio::test(start_paused = true)]
async fn silences_of_a_working_walsender_are_survived_until_it_waits() {
    let started = Instant::now();
    let (error, survived) = silence(vec![
        Ok(seen(10, None)),
        Ok(seen(20, Some("Activity/WalSenderWaitForWAL"))),
        Ok(seen(20, Some("Client/WalSenderWriteData"))),
    ])
    .await;
    assert_eq!(survived, 2);
    assert_eq!(started.elapsed(), Duration::from_secs(15));
    let SourceError::StreamSilent {
        silent_for, reason, ..
    } = &error
    else {
        panic!("not a silence: {error:?}");
    };
    assert_eq!(*silent_for, Duration::from_secs(5));
    assert!(matches!(
        reason,
        Silence::Waiting {
            sent_lsn: Lsn(20),
            ..
        }
    ));
    assert_eq!(error.class(), surefoot_core_lifecycle::ErrorClass::Timeout);
    assert!(error.to_string().contains(RECEIVE), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_check_that_fails_or_finds_no_walsender_is_dead() {
    let (error, survived) = silence(vec![Err(SourceError::StreamEnded)]).await;
    assert_eq!(survived, 0);
    assert!(matches!(
        error,
        SourceError::StreamSilent {
            reason: Silence::ProbeFailed(_),
            ..
        }
    ));
    let (error, _) = silence(Vec::new()).await;
    assert!(matches!(
        error,
        SourceError::StreamSilent {
            reason: Silence::NoWalsender,
            ..
        }
    ));
}

fn seen(sent: u64, wait_event: Option<&str>) -> Option<WalsenderProgress> {
    Some(WalsenderProgress {
        sent_lsn: Lsn(sent),
        wait_event: wait_event.map(str::to_owned),
    })
}

#[test]
fn a_walsender_that_reads_wal_or_is_busy_is_alive() {
    let waiting = Some("Activity/WalSenderWaitForWAL");
    assert_eq!(judge(Some(Lsn(10)), seen(11, waiting)).unwrap(), Lsn(11));
    assert_eq!(judge(None, seen(10, None)).unwrap(), Lsn(10));
    let reading = Some("IO/ReorderBufferRead");
    assert_eq!(judge(Some(Lsn(10)), seen(10, reading)).unwrap(), Lsn(10));
}

#[test]
fn no_walsender_or_one_waiting_without_progress_is_dead() {
    assert!(matches!(judge(None, None), Err(Silence::NoWalsender)));
    let blocked = seen(10, Some("Client/WalSenderWriteData"));
    let Err(Silence::Waiting {
        sent_lsn,
        wait_event,
    }) = judge(Some(Lsn(10)), blocked)
    else {
        panic!("a blocked walsender is not alive");
    };
    assert_eq!(
        (sent_lsn, wait_event.as_str()),
        (Lsn(10), "Client/WalSenderWriteData")
    );
    let idle = seen(10, Some("Activity/WalSenderMain"));
    assert!(matches!(judge(None, idle), Err(Silence::Waiting { .. })));
}
