//! Group commit, for a store with one writer at a time (SQLite): writers
//! that arrive while a transaction is in progress are written together in
//! the next one.
//!
//! Turns and endings are written one by one, each before its ack or its
//! ending, and many start at once under load. One transaction each would
//! queue them behind each other on the database's commits (and on SQLite's
//! single writer); here the first waiting writer takes every write queued
//! meanwhile and commits them at once, so the number of transactions follows
//! the database's speed rather than the number of writers.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::{Store, StoreError, StoreResult, StoreWrite};

type Queued = (Vec<StoreWrite>, oneshot::Sender<StoreResult<()>>);

pub struct GroupCommit {
    store: Arc<dyn Store>,
    queue: Mutex<Vec<Queued>>,
    /// Held by the writer committing a group; the next in line commits
    /// whatever queued up meanwhile.
    writer: tokio::sync::Mutex<()>,
}

impl GroupCommit {
    pub fn new(store: Arc<dyn Store>) -> GroupCommit {
        GroupCommit {
            store,
            queue: Mutex::new(Vec::new()),
            writer: tokio::sync::Mutex::new(()),
        }
    }

    /// Writers waiting for the next transaction.
    pub fn waiting(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Applies `writes` in one transaction with whatever other writes are
    /// waiting: all of them land, or none (each caller gets the outcome).
    /// Dropping the future before it answers leaves the writes to whoever
    /// commits next, or to nobody if that was the last writer.
    pub async fn apply(&self, writes: Vec<StoreWrite>) -> StoreResult<()> {
        let (answer, outcome) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((writes, answer));
        {
            let _writing = self.writer.lock().await;
            let group = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
            // Empty: the writer before took ours along.
            if !group.is_empty() {
                let (writes, answers): (Vec<_>, Vec<_>) = group.into_iter().unzip();
                let writes: Vec<StoreWrite> = writes.into_iter().flatten().collect();
                let result = self.store.apply(&writes).await;
                metrics::histogram!("chatstream_store_group_writes").record(answers.len() as f64);
                for answer in answers {
                    let _ = answer.send(result.clone());
                }
            }
        }
        outcome.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the write was abandoned before it committed".into(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;
    use tokio::sync::Semaphore;
    use uuid::Uuid;

    use crate::protocol::UserId;

    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{ConversationPage, SearchHit, StoredConversation, StoredMessage};

    /// A real SQLite store whose transactions are counted and can be held
    /// open, so that writers provably arrive while one is in progress.
    struct Gated {
        inner: SqliteStore,
        transactions: AtomicUsize,
        gate: Semaphore,
    }

    #[async_trait]
    impl Store for Gated {
        fn name(&self) -> &'static str {
            "gated"
        }
        async fn ping(&self) -> StoreResult<()> {
            self.inner.ping().await
        }
        async fn apply(&self, writes: &[StoreWrite]) -> StoreResult<()> {
            self.transactions.fetch_add(1, Ordering::SeqCst);
            let _pass = self.gate.acquire().await.expect("the gate stays open");
            self.inner.apply(writes).await
        }
        async fn conversation(&self, id: Uuid) -> StoreResult<Option<StoredConversation>> {
            self.inner.conversation(id).await
        }
        async fn messages(&self, id: Uuid) -> StoreResult<Vec<StoredMessage>> {
            self.inner.messages(id).await
        }
        async fn message_conversation(&self, id: Uuid) -> StoreResult<Option<Uuid>> {
            self.inner.message_conversation(id).await
        }
        async fn list_conversations(
            &self,
            owner: &UserId,
            limit: usize,
            before: Option<&str>,
        ) -> StoreResult<ConversationPage> {
            self.inner.list_conversations(owner, limit, before).await
        }
        async fn count_conversations(&self, owner: &UserId) -> StoreResult<u64> {
            self.inner.count_conversations(owner).await
        }
        async fn streaming_replies(&self) -> StoreResult<Vec<(Uuid, Uuid)>> {
            self.inner.streaming_replies().await
        }
        async fn search(
            &self,
            owner: &UserId,
            query: &str,
            limit: usize,
        ) -> StoreResult<Vec<SearchHit>> {
            self.inner.search(owner, query, limit).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writers_arriving_during_a_commit_share_the_next_one() {
        let store = Arc::new(Gated {
            inner: SqliteStore::open_in_memory().await.unwrap(),
            transactions: AtomicUsize::new(0),
            gate: Semaphore::new(0),
        });
        let group = Arc::new(GroupCommit::new(store.clone()));
        let owner = UserId::new_guest();
        let write = {
            let owner = owner.clone();
            move || {
                let now = crate::engine::now();
                vec![StoreWrite::Conversation(StoredConversation {
                    id: Uuid::new_v4(),
                    owner: owner.clone(),
                    title: None,
                    created_at: now,
                    updated_at: now,
                })]
            }
        };
        let first = tokio::spawn({
            let group = group.clone();
            let writes = write();
            async move { group.apply(writes).await }
        });
        // The first writer's transaction is open (held at the gate) …
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while store.transactions.load(Ordering::SeqCst) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the first commit starts"
            );
            tokio::task::yield_now().await;
        }
        // … while 20 more arrive.
        let rest: Vec<_> = (0..20)
            .map(|_| {
                let group = group.clone();
                let writes = write();
                tokio::spawn(async move { group.apply(writes).await })
            })
            .collect();
        while group.waiting() < 20 {
            assert!(tokio::time::Instant::now() < deadline, "the writers queue");
            tokio::task::yield_now().await;
        }
        store.gate.add_permits(2);
        first.await.unwrap().unwrap();
        for writer in rest {
            writer.await.unwrap().unwrap();
        }
        assert_eq!(
            store.transactions.load(Ordering::SeqCst),
            2,
            "one commit for the 20"
        );
        assert_eq!(store.count_conversations(&owner).await.unwrap(), 21);
    }
}
