//! Moving issue actions to a failure group's new id. Restoring a snapshot written before
//! descriptions were normalised merges some groups, and their ids change; an acknowledgement
//! filed under an old id would otherwise point at nothing.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{issue_key, IssueAction, IssueBook};
use crate::changelog::{ChangelogError, ChangelogWriter};
use crate::store::{format_failure_id, Rekey, Store};

/// One record to append to the issues topic: an action under its new key, or a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Move {
    Write(IssueAction),
    Forget(String),
}

/// The records that carry each changed id's newest action over to its new id. An action the
/// new id already has wins if it is at least as new. The old key is always tombstoned, so
/// compaction drops it.
pub(crate) fn moves(book: &IssueBook, rekeys: &[Rekey]) -> Vec<Move> {
    let mut out = Vec::new();
    for rekey in rekeys {
        let from = format_failure_id(rekey.from);
        let Some(old) = book.newest(&rekey.tenant_id, &from) else {
            continue;
        };
        let to = format_failure_id(rekey.to);
        let newer_there = book
            .newest(&rekey.tenant_id, &to)
            .is_some_and(|kept| kept.at_ms >= old.at_ms);
        if !newer_there {
            out.push(Move::Write(IssueAction {
                failure_id: to,
                ..old
            }));
        }
        out.push(Move::Forget(issue_key(&rekey.tenant_id, &from)));
    }
    out
}

/// Appends `moves` to the topic and to the book, in order.
pub(crate) async fn apply(
    book: &IssueBook,
    writer: &ChangelogWriter,
    moves: Vec<Move>,
) -> Result<(), ChangelogError> {
    for step in moves {
        match step {
            Move::Write(action) => {
                let payload = serde_json::to_vec(&action).unwrap_or_default();
                writer.write(&action.key(), &payload).await?;
                info!(tenant = %action.tenant_id, failure_id = %action.failure_id, "issue action moved to the group's new id");
                book.record(action);
            }
            Move::Forget(key) => {
                writer.tombstone(&key).await?;
                book.forget(&key);
            }
        }
    }
    Ok(())
}

/// Moves the actions of ids that restores changed, once the book has read the whole topic.
/// Ids whose move fails are tried again on the next round.
pub(crate) async fn move_periodically(
    store: std::sync::Arc<Store>,
    book: std::sync::Arc<IssueBook>,
    writer: std::sync::Arc<ChangelogWriter>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !book.caught_up() {
            continue;
        }
        let rekeys = store.take_rekeys();
        if rekeys.is_empty() {
            continue;
        }
        if let Err(err) = apply(&book, &writer, moves(&book, &rekeys)).await {
            warn!(error = %err, "cannot move issue actions to new failure ids yet; retrying");
            store.note_rekeys(rekeys);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issues::ActionKind;

    fn action(failure_id: u128, at_ms: i64) -> IssueAction {
        IssueAction {
            tenant_id: "acme".into(),
            failure_id: format_failure_id(failure_id),
            action: ActionKind::Acknowledge,
            actor: "ana".into(),
            grant: String::new(),
            at_ms,
            note: "on it".into(),
            until_ms: None,
        }
    }

    fn rekey(from: u128, to: u128) -> Rekey {
        Rekey {
            tenant_id: "acme".into(),
            from,
            to,
        }
    }

    #[test]
    fn an_action_moves_to_the_new_id_and_the_old_key_is_tombstoned() {
        let book = IssueBook::default();
        book.record(action(1, 10));
        let planned = moves(&book, &[rekey(1, 2)]);
        assert_eq!(
            planned,
            vec![
                Move::Write(action(2, 10)),
                Move::Forget(issue_key("acme", &format_failure_id(1))),
            ]
        );
    }

    #[test]
    fn a_newer_action_on_the_new_id_is_kept() {
        let book = IssueBook::default();
        book.record(action(1, 10));
        book.record(action(2, 20));
        let planned = moves(&book, &[rekey(1, 2)]);
        assert_eq!(
            planned,
            vec![Move::Forget(issue_key("acme", &format_failure_id(1)))]
        );
    }

    /// Through Kafka: an acknowledgement on the topic under the old id is moved by the task,
    /// and a second instance reading the topic from the start sees it under the new id only.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_task_moves_an_action_on_the_topic_once_the_book_has_read_it() {
        use std::sync::Arc;

        use crate::store::StoreLimits;
        use crate::testkit::EmbeddedKafka;

        let kafka = EmbeddedKafka::start(1).expect("mock cluster");
        kafka.create_topic("t.issues", 1).expect("topic");
        let mut client = rdkafka::ClientConfig::new();
        client.set("bootstrap.servers", kafka.bootstrap_servers());
        let writer = Arc::new(ChangelogWriter::new(&client, "t.issues").expect("writer"));
        let filed = action(1, 10);
        let payload = serde_json::to_vec(&filed).expect("json");
        writer.write(&filed.key(), &payload).await.expect("written");

        let follow = |name: &str, shutdown: CancellationToken| {
            let book = Arc::new(IssueBook::default());
            crate::changelog::follow(&client, name, "t.issues".into(), book.clone(), shutdown)
                .expect("follower");
            book
        };
        let shutdown = CancellationToken::new();
        let book = follow("first", shutdown.clone());
        let store = Arc::new(Store::new(StoreLimits::default()));
        store.note_rekeys(vec![rekey(1, 2)]);
        let task = tokio::spawn(move_periodically(
            store.clone(),
            book.clone(),
            writer,
            shutdown.clone(),
        ));
        let moved = |book: &IssueBook| {
            book.newest("acme", &format_failure_id(2)) == Some(action(2, 10))
                && book.newest("acme", &format_failure_id(1)).is_none()
        };
        let waited = std::time::Instant::now();
        while !moved(&book) {
            assert!(waited.elapsed() < Duration::from_secs(20), "moved in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(store.take_rekeys().is_empty(), "done, not pending");
        let second = follow("second", shutdown.clone());
        let waited = std::time::Instant::now();
        while !(second.caught_up() && moved(&second)) {
            assert!(
                waited.elapsed() < Duration::from_secs(20),
                "read back in time"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.cancel();
        task.await.expect("task ends");
    }

    #[test]
    fn an_id_without_actions_moves_nothing() {
        let book = IssueBook::default();
        assert!(moves(&book, &[rekey(1, 2)]).is_empty());
    }
}
