#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
//! Property tests of the offset/epoch rules (memory backend) and of room names.

mod common;

use proptest::prelude::*;
use surefoot_session_store::{RoomId, SessionStore};

#[derive(Debug, Clone)]
enum Step {
    Publish,
    DeleteHistory,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![8 => Just(Step::Publish), 1 => Just(Step::DeleteHistory)],
        0..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever happened to a room, a resume from any earlier position is `recovered` exactly
    /// when the epoch is unchanged and nothing after the position was trimmed, and then returns
    /// precisely the messages after it, in order.
    #[test]
    fn resume_is_recovered_exactly_when_nothing_was_lost(before in steps(), after in steps(), keep in 1_usize..10, pick in 0_u64..50) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let store = common::memory(keep);
            let room = RoomId::new("r").unwrap();
            let session = store.create(common::new_session("p")).await.unwrap();
            store.join(session.id, &room).await.unwrap();
            apply(&store, &room, &before).await;
            let seen = store.position(&room).await.unwrap();
            let offset = pick.min(seen.offset);
            apply(&store, &room, &after).await;
            let deleted = after.iter().any(|s| matches!(s, Step::DeleteHistory));
            let top = store.position(&room).await.unwrap();
            let resume = store.resume(session.id, &room, offset, &seen.epoch, 1000).await.unwrap();
            let trimmed = top.offset.saturating_sub(keep as u64) > offset;
            prop_assert_eq!(resume.recovered, !deleted && !trimmed);
            if resume.recovered {
                let got: Vec<u64> = resume.messages.iter().map(|m| m.offset).collect();
                prop_assert_eq!(got, (offset + 1..=top.offset).collect::<Vec<_>>());
            }
            Ok(())
        })?;
    }

    #[test]
    fn room_names_are_accepted_exactly_when_safe_for_keys(name in "\\PC{0,140}") {
        let safe = !name.is_empty() && name.len() <= 128
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
        prop_assert_eq!(RoomId::new(name.clone()).is_ok(), safe, "{:?}", name);
    }
}

async fn apply(store: &dyn SessionStore, room: &RoomId, steps: &[Step]) {
    for step in steps {
        match step {
            Step::Publish => {
                store.publish(room, &serde_json::json!(1)).await.unwrap();
            }
            Step::DeleteHistory => store.delete_history(room).await.unwrap(),
        }
    }
}
