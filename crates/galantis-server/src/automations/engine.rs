//! `automation.step`: one transition of one run, performed in one tenant
//! transaction with the job's completion (steps in the module doc of
//! [`super`]).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use galantis_core::automation::{
    ActivityStatus, AutomationStatus, Effect, Input, RunEvent, RunStatus, step,
};
use galantis_core::{JobKind, Lane, MessageStatus, RetrySchedule};
use galantis_store::tenant::automations::{self, activity, runs};
use galantis_store::{StoreError, TenantTx};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::facts::Templates;
use super::versions::Version;
use super::{facts, render, slip, versions};
use crate::jobs::{JobContext, JobError};
use crate::sending::connection::{self, Resolved};
use crate::sending::queue;

/// How often a held run (its automation `PAUSED`) looks again.
pub const PAUSED_RECHECK: Duration = Duration::from_secs(60);

/// What wakes a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StepInput {
    Start,
    Delay {
        node: String,
        visit: u32,
    },
    Window {
        node: String,
        visit: u32,
    },
    Reply {
        event_id: Uuid,
        at: DateTime<Utc>,
        button_id: Option<String>,
    },
    Status {
        event_id: Uuid,
        message_id: Uuid,
        status: MessageStatus,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepJob {
    pub run_id: Uuid,
    pub input: StepInput,
}

impl JobKind for StepJob {
    const KIND: &'static str = "automation.step";
    const LANE: Lane = Lane::Flows;
    const MAX_ATTEMPTS: u32 = 20;
    const TIMEOUT: Duration = Duration::from_secs(120);
    const RETRY: RetrySchedule = RetrySchedule {
        base: Duration::from_secs(2),
        factor: 2.0,
        cap: Duration::from_secs(900),
        jitter: 0.2,
    };

    /// Per (run, node, visit) for timers, per event for wake-ups.
    fn unique_key(&self) -> Option<String> {
        let r = self.run_id;
        Some(match &self.input {
            StepInput::Start => format!("automation_step:{r}:start"),
            StepInput::Delay { node, visit } => format!("automation_step:{r}:delay:{node}:{visit}"),
            StepInput::Window { node, visit } => {
                format!("automation_step:{r}:window:{node}:{visit}")
            }
            StepInput::Reply { event_id, .. } | StepInput::Status { event_id, .. } => {
                format!("automation_step:{r}:event:{event_id}")
            }
        })
    }
}

pub(super) async fn run(ctx: JobContext, job: StepJob) -> Result<(), JobError> {
    let tenant = ctx.tenant_required()?;
    let mut tx = ctx.app.db.tenant_tx(tenant).await?;
    match step_in(&ctx, &mut tx, job).await {
        Ok(()) => {
            ctx.complete_in(&mut tx).await?;
            tx.commit().await?;
            Ok(())
        }
        Err(e) => {
            tx.rollback().await?;
            Err(e)
        }
    }
}

/// One step of one run in `tx`, alone (a batch's steps go through
/// `step_batch`); the caller completes the job and commits on `Ok`, and
/// rolls back on `Err`.
async fn step_in(ctx: &JobContext, tx: &mut TenantTx, job: StepJob) -> Result<(), JobError> {
    let mut reads = Reads::default();
    let Some(t) = take(ctx, tx, job, false, &mut reads).await? else {
        return Ok(());
    };
    let conn = if t.out.sends() {
        Some(
            connection::resolve(&ctx.app, ctx.tenant_required()?)
                .await
                .map_err(JobError::Retry)?,
        )
    } else {
        None
    };
    let now = ctx.now();
    apply(
        tx,
        &t.run,
        t.out,
        conn.as_deref(),
        &mut reads.templates,
        now,
    )
    .await?;
    wake_missed(tx, &t.run, t.missed, now).await?;
    Ok(())
}

/// What the steps of one transaction read once: templates, automations.
#[derive(Default)]
pub(super) struct Reads {
    pub templates: Templates,
    automations: HashMap<Uuid, Option<automations::Automation>>,
}

/// A step decided but not yet performed: the locked run, the step
/// function's output, and a wake-up the slip check found.
pub(super) struct Taken {
    pub run: runs::Run,
    pub out: galantis_core::automation::Step,
    pub missed: Option<slip::Missed>,
}

/// Steps 1–5 of the module doc of [`super`]: `None` when the job is done
/// without a step (the run ended, or was ended here: writes made). In a
/// batch (`batched`) it never waits for a message another transaction
/// holds (`JobError::Later`, before it wrote anything).
pub(super) async fn take(
    ctx: &JobContext,
    tx: &mut TenantTx,
    job: StepJob,
    batched: bool,
    reads: &mut Reads,
) -> Result<Option<Taken>, JobError> {
    let now = ctx.now();
    let now_ms = now.timestamp_millis();
    // 1. The run, locked.
    let Some(run) = runs::lock(tx, job.run_id).await? else {
        return Ok(None);
    };
    if run.status.is_terminal() {
        return Ok(None);
    }
    // 2. Paused (or deactivated): hold at this step.
    let a = match reads.automations.get(&run.automation_id) {
        Some(a) => a.clone(),
        None => {
            let a = automations::get(tx, run.automation_id).await?;
            reads.automations.insert(run.automation_id, a.clone());
            a
        }
    };
    let Some(a) = a else {
        end_run(tx, &run, "automation_deleted", now_ms).await?;
        return Ok(None);
    };
    if a.status != AutomationStatus::Active {
        return Err(JobError::Snooze(PAUSED_RECHECK));
    }
    // 3. The run's version and its facts.
    let Some(version) = versions::of_run(tx, run.automation_id, run.version).await? else {
        end_run(tx, &run, "flow_invalid", now_ms).await?;
        return Ok(None);
    };
    let facts = facts::load(tx, &run, &version, None, &mut reads.templates).await?;
    // 4. Step.
    let input = match &job.input {
        StepInput::Start => Input::Start,
        StepInput::Delay { node, .. } => Input::DelayElapsed { node: node.clone() },
        StepInput::Window { node, .. } => Input::WindowElapsed { node: node.clone() },
        StepInput::Reply { at, button_id, .. } => Input::EventArrived(RunEvent::Reply {
            at: *at,
            button_id: button_id.clone(),
        }),
        StepInput::Status {
            message_id, status, ..
        } => Input::EventArrived(RunEvent::MessageStatus {
            message_id: *message_id,
            status: *status,
        }),
    };
    let out = step(&version.flow, &run.state, input, &facts, now);
    // A timer that ran early waits again in place (its own job cannot be
    // moved while it runs).
    if let Some(until) = early(&job.input, &out.effects)
        && until > now
    {
        let wait = (until - now).to_std().unwrap_or_default();
        return Err(JobError::Snooze(wait));
    }
    // 5. An awaited status or reply committed since step 3 read the facts,
    //    while no run waited for it: read again under the lock its
    //    handler takes, and wake this run if it moved (`slip`).
    let missed = slip::missed(tx, &run, &out, &facts, batched).await?;
    Ok(Some(Taken { run, out, missed }))
}

/// Queues the run's own wake-up with what [`slip`] found committed unseen.
pub(super) async fn wake_missed(
    tx: &mut TenantTx,
    run: &runs::Run,
    missed: Option<slip::Missed>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(missed) = missed else {
        return Ok(());
    };
    let event_id = Uuid::now_v7();
    let input = match missed {
        slip::Missed::Status { message_id, status } => StepInput::Status {
            event_id,
            message_id,
            status,
        },
        slip::Missed::Reply { at, button_id } => StepInput::Reply {
            event_id,
            at,
            button_id,
        },
    };
    let job = StepJob {
        run_id: run.id,
        input,
    };
    crate::jobs::enqueue(tx, &job, now).await?;
    Ok(())
}

/// A new run's first step, taken in its enrolment's transaction (no
/// `Start` job, no second transaction; the enrolment job's completion
/// commits with it). `contact` is the run's contact as the gate read it.
/// A first step that sends while no connection is at hand is left to a
/// `Start` job instead (it resolves the connection itself).
pub(super) async fn start_inline(
    tx: &mut TenantTx,
    run: &runs::Run,
    version: &Version,
    contact: galantis_store::tenant::contacts::Contact,
    conn: Option<&Resolved>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut templates = Templates::default();
    let facts = facts::load(tx, run, version, Some(contact), &mut templates).await?;
    let out = step(&version.flow, &run.state, Input::Start, &facts, now);
    if conn.is_none() && out.sends() {
        return queue_start(tx, run.id, now).await;
    }
    apply(tx, run, out, conn, &mut templates, now).await
}

/// Leaves a new run's first step to a `Start` job.
pub(super) async fn queue_start(
    tx: &mut TenantTx,
    run_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let job = StepJob {
        run_id,
        input: StepInput::Start,
    };
    crate::jobs::enqueue(tx, &job, now).await?;
    Ok(())
}

/// A send's outcome: the message queued, or the refusal's code.
pub(super) type SendOutcome = Result<Uuid, String>;

/// Renders and queues one send of `run` at (node, visit).
#[allow(clippy::too_many_arguments)]
pub(super) async fn queue_one(
    tx: &mut TenantTx,
    templates: &mut Templates,
    conn: Option<&Resolved>,
    run: &runs::Run,
    node: &str,
    visit: u32,
    template_id: Uuid,
    variables: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<SendOutcome, StoreError> {
    let key = render::send_key(run.id, node, visit);
    let Some(send) =
        render::outgoing(tx, templates, template_id, variables, run.contact_id, key).await?
    else {
        return Ok(Err("template_not_found".to_owned()));
    };
    let Some(c) = conn else {
        return Ok(Err("no_connection".to_owned()));
    };
    Ok(match queue::queue_in(tx, c, now, &send).await? {
        Ok(q) => Ok(q.message.id),
        Err(r) => Err(r.code().to_owned()),
    })
}

/// Performs one step's effects for `run` (activity per node visit, timers,
/// sends) and saves the run's new state. A refused send fails the node
/// and ends the run; later effects are not performed.
pub(super) async fn apply(
    tx: &mut TenantTx,
    run: &runs::Run,
    out: galantis_core::automation::Step,
    conn: Option<&Resolved>,
    templates: &mut Templates,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut written = Written::default();
    let step = Applied {
        conn,
        first_send: None,
        written: &mut written,
    };
    apply_into(tx, run, out, templates, step, now).await?;
    written.write(tx, now).await
}

/// What steps leave to write together: their runs' new states and their
/// activity transitions (a batch's in one statement each).
#[derive(Default)]
pub(super) struct Written {
    saves: Vec<runs::Save>,
    visits: Vec<activity::Transition>,
}

impl Written {
    pub(super) async fn write(
        self,
        tx: &mut TenantTx,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now_ms = now.timestamp_millis();
        runs::save_many(tx, &self.saves, now_ms).await?;
        activity::transition_many(tx, &self.visits, now_ms).await
    }
}

/// What [`apply_into`] works with besides the run: the connection, the
/// outcome of the step's first send when the caller already queued it
/// (batched with other runs' sends), and where the step's state and
/// activity go (the caller writes them, a batch's together).
pub(super) struct Applied<'a> {
    pub conn: Option<&'a Resolved>,
    pub first_send: Option<SendOutcome>,
    pub written: &'a mut Written,
}

/// [`apply`], leaving the run's state and activity in `step.written`.
pub(super) async fn apply_into(
    tx: &mut TenantTx,
    run: &runs::Run,
    out: galantis_core::automation::Step,
    templates: &mut Templates,
    step: Applied<'_>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Applied {
        conn,
        mut first_send,
        written,
    } = step;
    let visits = &mut written.visits;
    let mut state = out.state;
    let mut last_message = None;
    let mut end_reason: Option<String> = None;
    for e in &out.effects {
        let Some((node, visit)) = e.node() else {
            continue;
        };
        let v = activity::Visit {
            run_id: run.id,
            automation_id: run.automation_id,
            contact_id: run.contact_id,
            node_id: node,
            visit,
        };
        let (status, reason) = ActivityStatus::of(e).expect("effects with a node have a status");
        let mut message_id = None;
        match e {
            Effect::WaitUntil { at, .. } => {
                let j = StepJob {
                    run_id: run.id,
                    input: StepInput::Delay {
                        node: node.to_owned(),
                        visit,
                    },
                };
                schedule(tx, &j, *at).await?;
            }
            Effect::WaitForEvent { until, .. } => {
                let j = StepJob {
                    run_id: run.id,
                    input: StepInput::Window {
                        node: node.to_owned(),
                        visit,
                    },
                };
                schedule(tx, &j, *until).await?;
            }
            Effect::Send {
                template_id,
                variables,
                ..
            } => {
                // The first send may have been queued with others already.
                let outcome = match first_send.take() {
                    Some(o) => o,
                    None => {
                        queue_one(
                            tx,
                            templates,
                            conn,
                            run,
                            node,
                            visit,
                            *template_id,
                            variables,
                            now,
                        )
                        .await?
                    }
                };
                match outcome {
                    Ok(id) => {
                        message_id = Some(id);
                        last_message = Some(id);
                    }
                    Err(code) => {
                        let failed = ActivityStatus::Failed;
                        visits.push(activity::Transition::new(
                            &v,
                            failed,
                            Some(code.clone()),
                            None,
                        ));
                        state.status = RunStatus::Failed;
                        state.wait = None;
                        state.node = Some(node.to_owned());
                        end_reason = Some(code);
                        break;
                    }
                }
            }
            Effect::Skip { reason, .. } | Effect::Fail { reason, .. } => {
                end_reason = Some(reason.clone());
            }
            _ => {}
        }
        visits.push(activity::Transition::new(
            &v,
            status,
            reason.map(str::to_owned),
            message_id,
        ));
    }
    // The state, with the wait columns wake-ups look up.
    written.saves.push(runs::Save {
        id: run.id,
        state,
        last_message_id: last_message,
        end_reason,
    });
    metrics::counter!("galantis_flow_steps_total").increment(1);
    Ok(())
}

/// When a timer job ran before its time: the wait it re-emitted for its
/// own node and visit.
fn early(input: &StepInput, effects: &[Effect]) -> Option<DateTime<Utc>> {
    let (n, v) = match input {
        StepInput::Delay { node, visit } | StepInput::Window { node, visit } => (node, *visit),
        _ => return None,
    };
    match effects {
        [Effect::WaitUntil { node, visit, at }] if node == n && *visit == v => Some(*at),
        [
            Effect::WaitForEvent {
                node, visit, until, ..
            },
        ] if node == n && *visit == v && matches!(input, StepInput::Window { .. }) => Some(*until),
        _ => None,
    }
}

/// Enqueues `job` at `at`, or moves its waiting job there.
async fn schedule(tx: &mut TenantTx, job: &StepJob, at: DateTime<Utc>) -> Result<(), StoreError> {
    let new = crate::jobs::new_job(job, at)
        .map_err(|e| StoreError::Config(format!("job payload: {e}")))?;
    galantis_store::jobs::schedule(tx, &new).await
}

/// Ends a live run outside the step function (`SKIPPED` with `reason`)
/// and skips the node it was at.
pub async fn end_run(
    tx: &mut TenantTx,
    run: &runs::Run,
    reason: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    if !runs::end(tx, run.id, RunStatus::Skipped, reason, now_ms).await? {
        return Ok(false);
    }
    if let (Some(node), Some(w)) = (&run.current_node, &run.state.wait) {
        let v = activity::Visit {
            run_id: run.id,
            automation_id: run.automation_id,
            contact_id: run.contact_id,
            node_id: node,
            visit: w.visit,
        };
        activity::transition(tx, &v, ActivityStatus::Skipped, Some(reason), None, now_ms).await?;
    }
    Ok(true)
}
