//! `automation.step` for a batch of one tenant's due steps in one
//! transaction (ADR 0041).
//!
//! Every step is taken first ([`engine::take`]: lock, facts, step, slip
//! check), reading each template and automation once for the batch. Then
//! the first send of every step is queued by one `queue_many`, so the
//! tenant's credit lock (`serialize_tenant_writes`) is taken once, at the
//! end of the batch, instead of at its first send and held while the rest
//! of the batch reads and steps: on PostgreSQL that lock serialised the
//! flow workers. Last, every step's effects are performed and the batch's
//! run states and activity written in one statement each.
//!
//! Writes are deferred to the end, so a step must not read what another
//! step of the batch writes: a second job for the same run or the same
//! contact ends the batch there, and runs after it commits, alone.

use std::collections::HashSet;

use futures::future::BoxFuture;
use galantis_core::automation::{Effect, Step};
use galantis_store::tenant::automations::runs;
use galantis_store::{StoreError, TenantTx};

use super::engine::{self, Applied, Reads, SendOutcome, StepJob, Taken, Written};
use super::facts::Templates;
use super::render;
use crate::jobs::JobContext;
use crate::jobs::JobError;
use crate::jobs::registry::BatchDone;
use crate::sending::connection::{self, Resolved};
use crate::sending::queue;

/// The batch handler registered with `Registry::batched_whole`.
pub(super) fn run_batch<'a>(
    ctxs: &'a [JobContext],
    tx: &'a mut TenantTx,
    jobs: Vec<StepJob>,
) -> BoxFuture<'a, Result<BatchDone, JobError>> {
    Box::pin(async move {
        let now = ctxs[0].now();
        let mut reads = Reads::default();
        let mut taken: Vec<Taken> = Vec::with_capacity(jobs.len());
        let mut runs_seen = HashSet::new();
        let mut contacts_seen = HashSet::new();
        let mut done = jobs.len();
        for (i, (ctx, job)) in ctxs.iter().zip(jobs).enumerate() {
            if !runs_seen.insert(job.run_id) {
                done = i;
                break;
            }
            match engine::take(ctx, tx, job, true, &mut reads).await {
                Ok(Some(t)) => {
                    if !contacts_seen.insert(t.run.contact_id) {
                        // Nothing written for this one yet: it runs alone.
                        done = i;
                        break;
                    }
                    taken.push(t);
                }
                Ok(None) => {}
                Err(JobError::Later) if i > 0 => {
                    done = i;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        let conn = if taken.iter().any(|t| t.out.sends()) {
            Some(
                connection::resolve(&ctxs[0].app, ctxs[0].tenant_required()?)
                    .await
                    .map_err(JobError::Retry)?,
            )
        } else {
            None
        };
        let steps: Vec<(&runs::Run, &Step)> = taken.iter().map(|t| (&t.run, &t.out)).collect();
        let firsts =
            queue_first_sends(tx, &mut reads.templates, conn.as_deref(), &steps, now).await?;
        let mut written = Written::default();
        let mut wakes = Vec::new();
        for (t, first_send) in taken.into_iter().zip(firsts) {
            let applied = Applied {
                conn: conn.as_deref(),
                first_send,
                written: &mut written,
            };
            engine::apply_into(tx, &t.run, t.out, &mut reads.templates, applied, now).await?;
            wakes.push((t.run, t.missed));
        }
        written.write(tx, now).await?;
        for (run, missed) in wakes {
            engine::wake_missed(tx, &run, missed, now).await?;
        }
        Ok(BatchDone {
            done,
            after: Vec::new(),
        })
    })
}

/// The first send of each step, rendered and queued together by one
/// `queue_many` (one credit check for all): its outcome, or `None` for a
/// step that does not send. Without a connection, every send is refused
/// `no_connection`.
pub(super) async fn queue_first_sends(
    tx: &mut TenantTx,
    templates: &mut Templates,
    conn: Option<&Resolved>,
    steps: &[(&runs::Run, &Step)],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Option<SendOutcome>>, StoreError> {
    let mut sends = Vec::new();
    let mut firsts: Vec<Option<Result<usize, String>>> = Vec::with_capacity(steps.len());
    for (run, out) in steps {
        let first = out.effects.iter().find_map(|e| match (e, e.node()) {
            (
                Effect::Send {
                    template_id,
                    variables,
                    ..
                },
                Some((node, visit)),
            ) => Some((node, visit, *template_id, variables)),
            _ => None,
        });
        let Some((node, visit, template_id, variables)) = first else {
            firsts.push(None);
            continue;
        };
        let key = render::send_key(run.id, node, visit);
        let send =
            render::outgoing(tx, templates, template_id, variables, run.contact_id, key).await?;
        firsts.push(Some(match send {
            Some(o) if conn.is_some() => {
                sends.push(o);
                Ok(sends.len() - 1)
            }
            Some(_) => Err("no_connection".to_owned()),
            None => Err("template_not_found".to_owned()),
        }));
    }
    let outcomes = match conn {
        Some(c) if !sends.is_empty() => queue::queue_many(tx, c, now, &sends).await?,
        _ => Vec::new(),
    };
    Ok(firsts
        .into_iter()
        .map(|first| {
            first.map(|f| {
                f.and_then(|i| match &outcomes[i] {
                    Ok(q) => Ok(q.message.id),
                    Err(r) => Err(r.code().to_owned()),
                })
            })
        })
        .collect())
}
