//! Group commit per tenant. Each tenant has one writer task per kind of
//! write; it takes every write waiting for it, performs them in one
//! transaction, and only then answers each caller. Under load many small
//! transactions become a few larger ones: on SQLite, where a file has one
//! writer, the per-transaction cost (the writer's hand-over, `BEGIN
//! IMMEDIATE`, `COMMIT`) is what bounds throughput, and on PostgreSQL it is
//! round trips. Idle, a write is taken at once, so latency does not grow.
//!
//! A caller's answer always follows the commit of its own write, or carries
//! the error that rolled its group back (every write of the group failed
//! then; the caller decides what to do, e.g. write alone).
//!
//! Users: webhook ingest (`webhooks::batcher`) and the send path's
//! bookkeeping (`sending::recorder`).

use std::sync::Arc;

use dashmap::DashMap;
use futures::future::BoxFuture;
use galantis_core::TenantId;
use tokio::sync::{mpsc, oneshot};

/// One kind of write that a tenant's writer groups.
pub trait GroupWrite: Send + Sync + 'static {
    type Item: Send + 'static;
    type Out: Send + 'static;
    /// Names the writer in metrics.
    const NAME: &'static str;
    /// Largest number of writes in one transaction.
    const MAX_BATCH: usize;

    /// Performs `items` of `tenant` in one transaction and commits; one
    /// outcome per item, in order. An error fails the whole group (nothing
    /// of it may be committed).
    fn write<'a>(
        &'a self,
        tenant: TenantId,
        items: &'a [Self::Item],
    ) -> BoxFuture<'a, Result<Vec<Self::Out>, String>>;
}

type Reply<O> = oneshot::Sender<Result<O, String>>;
type Queue<W> = mpsc::Sender<(<W as GroupWrite>::Item, Reply<<W as GroupWrite>::Out>)>;

pub struct GroupCommit<W: GroupWrite> {
    write: Arc<W>,
    writers: Arc<DashMap<TenantId, Queue<W>>>,
}

impl<W: GroupWrite> Clone for GroupCommit<W> {
    fn clone(&self) -> Self {
        Self {
            write: self.write.clone(),
            writers: self.writers.clone(),
        }
    }
}

impl<W: GroupWrite> GroupCommit<W> {
    pub fn new(write: W) -> Self {
        Self {
            write: Arc::new(write),
            writers: Arc::default(),
        }
    }

    /// Performs `item` for `tenant` in the tenant's next group; returns its
    /// outcome once the group has committed.
    pub async fn submit(&self, tenant: TenantId, item: W::Item) -> Result<W::Out, String> {
        let (tx, rx) = oneshot::channel();
        let mut pending = Some((item, tx));
        for _ in 0..2 {
            let sender = self
                .writers
                .entry(tenant)
                .or_insert_with(|| {
                    let (s, r) = mpsc::channel(4 * W::MAX_BATCH);
                    tokio::spawn(writer(self.write.clone(), tenant, r));
                    s
                })
                .clone();
            match sender
                .send(pending.take().expect("one attempt at a time"))
                .await
            {
                Ok(()) => {
                    return rx
                        .await
                        .map_err(|_| format!("the {} writer stopped", W::NAME))?;
                }
                Err(mpsc::error::SendError(back)) => {
                    // The writer ended (runtime shutting down, or it
                    // panicked): start afresh once.
                    self.writers.remove(&tenant);
                    pending = Some(back);
                }
            }
        }
        Err(format!("the {} writer is unavailable", W::NAME))
    }
}

async fn writer<W: GroupWrite>(
    write: Arc<W>,
    tenant: TenantId,
    mut rx: mpsc::Receiver<(W::Item, Reply<W::Out>)>,
) {
    let mut items = Vec::with_capacity(W::MAX_BATCH);
    let mut replies = Vec::with_capacity(W::MAX_BATCH);
    while let Some((item, reply)) = rx.recv().await {
        items.push(item);
        replies.push(reply);
        while items.len() < W::MAX_BATCH {
            match rx.try_recv() {
                Ok((item, reply)) => {
                    items.push(item);
                    replies.push(reply);
                }
                Err(_) => break,
            }
        }
        metrics::histogram!("galantis_group_commit_size", "writer" => W::NAME)
            .record(items.len() as f64);
        let outcome = write.write(tenant, &items).await;
        items.clear();
        match outcome {
            Ok(outs) if outs.len() == replies.len() => {
                for (reply, out) in replies.drain(..).zip(outs) {
                    let _ = reply.send(Ok(out));
                }
            }
            Ok(outs) => {
                let e = format!(
                    "the {} writer returned {} outcomes for {} writes",
                    W::NAME,
                    outs.len(),
                    replies.len()
                );
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
            Err(e) => {
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records each group it is given; fails any group containing 0.
    #[derive(Default)]
    struct Recording(Mutex<Vec<Vec<u32>>>);

    impl GroupWrite for Recording {
        type Item = u32;
        type Out = u32;
        const NAME: &'static str = "test";
        const MAX_BATCH: usize = 4;

        fn write<'a>(
            &'a self,
            _tenant: TenantId,
            items: &'a [u32],
        ) -> BoxFuture<'a, Result<Vec<u32>, String>> {
            Box::pin(async move {
                // Let the other submissions queue up behind this group.
                tokio::task::yield_now().await;
                self.0.lock().unwrap().push(items.to_vec());
                if items.contains(&0) {
                    return Err("zero".into());
                }
                Ok(items.iter().map(|i| i * 10).collect())
            })
        }
    }

    #[tokio::test]
    async fn every_write_gets_its_own_outcome_and_groups_stay_bounded() {
        let g = GroupCommit::new(Recording::default());
        let tenant = TenantId::new();
        let calls: Vec<_> = (1..=10u32)
            .map(|i| {
                let g = g.clone();
                tokio::spawn(async move { (i, g.submit(tenant, i).await) })
            })
            .collect();
        for c in calls {
            let (i, out) = c.await.unwrap();
            assert_eq!(out, Ok(i * 10));
        }
        let groups = g.write.0.lock().unwrap().clone();
        assert!(groups.iter().all(|b| !b.is_empty() && b.len() <= 4));
        let mut all: Vec<u32> = groups.concat();
        all.sort_unstable();
        assert_eq!(all, (1..=10).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_failed_group_fails_each_of_its_writes_and_the_writer_goes_on() {
        let g = GroupCommit::new(Recording::default());
        let tenant = TenantId::new();
        assert_eq!(g.submit(tenant, 0).await, Err("zero".to_owned()));
        assert_eq!(g.submit(tenant, 7).await, Ok(70));
    }

    #[tokio::test]
    async fn tenants_have_separate_writers() {
        let g = GroupCommit::new(Recording::default());
        let (a, b) = (TenantId::new(), TenantId::new());
        assert_eq!(g.submit(a, 1).await, Ok(10));
        assert_eq!(g.submit(b, 2).await, Ok(20));
        assert_eq!(g.writers.len(), 2);
    }
}
