//! `message.send`: one job per outbound message, on the `messages` lane.
//!
//! 1. Already accepted (a previous run, or a status webhook that carried
//!    our idempotency key)? Settle credits and complete.
//! 2. Held while the tenant's connection needs attention (snooze).
//! 3. Re-check what may have changed since queueing: consent, template
//!    status, the service window, the number.
//! 4. A previous run started a call whose outcome is unknown
//!    (`send_state = 'sending'`)? Reconcile before sending again.
//! 5. Pace: pair rate, then the number's throughput (short waits are slept,
//!    long ones snooze; no attempt is spent).
//! 6. Record `sending` (only while the message is still `QUEUED`: one
//!    withdrawn meanwhile, e.g. by a campaign's cancel, completes unsent),
//!    call Meta, record the outcome with the job's completion in one
//!    transaction. The `sending` mark and an acceptance are group-committed
//!    with the tenant's other sends (`recorder`); failures are written
//!    alone.

use std::time::Duration;

use galantis_core::sending::{
    Acquired, ErrorClass, Lookup, MessageSender, RateKey, RateLimiter, SendError, SendRequest,
};
use galantis_core::templates::{TemplateCategory, TemplateStatus};
use galantis_core::{
    JobKind, Lane, MarketingState, MessageStatus, PhoneE164, RetrySchedule, TenantId,
};
use galantis_store::StoreError;
use galantis_store::tenant::sending::{self as store, Outbound};
use galantis_store::tenant::{billing, contacts, templates};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::connection::{self, Resolved};
use super::credits;
use super::recorder::{self, Recorded};
use crate::jobs::{JobContext, JobError};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendMessage {
    pub message_id: Uuid,
}

impl JobKind for SendMessage {
    const KIND: &'static str = "message.send";
    const LANE: Lane = Lane::Messages;
    const MAX_ATTEMPTS: u32 = 12;
    const TIMEOUT: Duration = Duration::from_secs(120);
    const RETRY: RetrySchedule = RetrySchedule {
        base: Duration::from_secs(2),
        factor: 2.0,
        cap: Duration::from_secs(600),
        jitter: 0.2,
    };

    /// One job per message, ever: a duplicated enqueue adds nothing.
    fn unique_key(&self) -> Option<String> {
        Some(format!("send:{}", self.message_id))
    }
}

fn permanent(msg: impl Into<String>) -> JobError {
    JobError::Permanent(anyhow::anyhow!(msg.into()))
}

pub async fn run(ctx: JobContext, job: SendMessage) -> Result<(), JobError> {
    let tenant = ctx
        .tenant()
        .ok_or_else(|| permanent("message.send belongs to a tenant"))?;
    let app = &ctx.app;
    // One read for the message and, when it is still to be sent, what may
    // have changed since queueing (step 3).
    let mut tx = app.db.tenant_read(tenant).await?;
    let m = store::outbound(&mut tx, job.message_id).await?;
    let facts = match &m {
        Some(m)
            if m.wamid.is_none()
                && m.send_state.as_deref() != Some("accepted")
                && m.status == MessageStatus::Queued =>
        {
            let contact = contacts::get(&mut tx, m.contact_id).await?;
            let template = match (&m.template_name, &m.template_language) {
                (Some(n), Some(l)) => templates::by_name(&mut tx, n, l).await?,
                _ => None,
            };
            let window = if m.kind.is_template() {
                true
            } else {
                super::facts::window_open(&mut tx, m.contact_id, &m.phone_number_id, ctx.now())
                    .await
                    .map_err(|e| JobError::Retry(anyhow::anyhow!("{e}")))?
            };
            Some((contact, template, window))
        }
        _ => None,
    };
    tx.commit().await?;
    let Some(m) = m else {
        return Err(permanent(format!(
            "message {} does not exist",
            job.message_id
        )));
    };
    // 1. Done already.
    if m.wamid.is_some() || m.send_state.as_deref() == Some("accepted") {
        return finish_accepted(&ctx, &m, None).await;
    }
    if m.status != MessageStatus::Queued {
        let mut tx = app.db.tenant_tx(tenant).await?;
        ctx.complete_in(&mut tx).await?;
        tx.commit().await?;
        return Ok(());
    }
    // 2. The connection.
    let conn = connection::resolve(app, tenant).await?;
    let hold = Duration::from_secs(app.sending.config().hold_recheck_secs);
    if !conn.tenant_active {
        return reject(
            &ctx,
            &m,
            None,
            "the store uninstalled Galantis: nothing is sent for it",
        )
        .await;
    }
    if conn.credentials == "sandbox" && !app.sending.has_sandbox() {
        // Holding would wait for a sandbox this configuration never mounts.
        return reject(&ctx, &m, None, connection::NO_SANDBOX).await;
    }
    if conn.state != "connected" {
        metrics::counter!("galantis_sends_held_total").increment(1);
        return Err(JobError::Snooze(hold));
    }
    let Some(number) = conn.number(&m.phone_number_id).cloned() else {
        return reject(
            &ctx,
            &m,
            None,
            "this WhatsApp number is no longer connected to the store",
        )
        .await;
    };
    let Some(base_url) = conn.base_url.clone() else {
        return Err(JobError::Retry(anyhow::anyhow!(
            "the embedded Meta sandbox is not listening yet on this node"
        )));
    };
    // 3. What may have changed since queueing (read with the message).
    let Some((contact, template, window)) = facts else {
        return Err(JobError::Retry(anyhow::anyhow!(
            "message {} changed while its job started",
            m.id
        )));
    };
    let Some(contact) = contact.filter(|c| !c.deleted && !c.redacted) else {
        return reject(&ctx, &m, None, "the contact was deleted or erased").await;
    };
    let Some(phone) = contact
        .phone
        .as_deref()
        .and_then(|p| PhoneE164::stored(p).ok())
    else {
        return reject(
            &ctx,
            &m,
            None,
            "CUSTOMER_IS_MISSING_CALLING_CODE: the contact has no E.164 phone",
        )
        .await;
    };
    let source = m.source.unwrap_or_default();
    let marketing = source.is_marketing()
        || template
            .as_ref()
            .is_some_and(|t| t.category == TemplateCategory::Marketing);
    if marketing && contact.marketing_state != MarketingState::Subscribed {
        return reject(
            &ctx,
            &m,
            None,
            "CUSTOMER_IS_NOT_OPTED_IN: the contact is no longer subscribed",
        )
        .await;
    }
    if m.kind.is_template() {
        let status = template
            .as_ref()
            .and_then(|t| TemplateStatus::from_meta(&t.status));
        if status != Some(TemplateStatus::Approved) {
            return reject(
                &ctx,
                &m,
                None,
                &format!(
                    "template_not_approved: the template is {}",
                    status.map_or("gone", TemplateStatus::as_str)
                ),
            )
            .await;
        }
    } else if !window {
        return reject(
            &ctx,
            &m,
            Some(131047),
            "outside_service_window: more than 24 hours since the customer last wrote",
        )
        .await;
    }
    let key = m
        .idempotency_key
        .clone()
        .unwrap_or_else(|| format!("msg:{}", m.id));
    let api = app.sending.api(&base_url);

    // 4. Reconcile an attempt whose outcome is unknown.
    if m.send_state.as_deref() == Some("sending") {
        match api.lookup(&m.phone_number_id, &key).await {
            Ok(Lookup::Accepted { wamid }) => {
                tracing::info!(message = %m.id, "reconciled: Meta had accepted the earlier attempt");
                metrics::counter!("galantis_sends_reconciled_total", "outcome" => "accepted")
                    .increment(1);
                return finish_accepted(&ctx, &m, Some((wamid, true))).await;
            }
            Ok(Lookup::NotFound) => {
                metrics::counter!("galantis_sends_reconciled_total", "outcome" => "not_found")
                    .increment(1);
            }
            Ok(Lookup::Unsupported) => {
                let waited = m
                    .send_started_at
                    .map_or(chrono::Duration::MAX, |t| ctx.now() - t);
                let window =
                    chrono::Duration::seconds(app.sending.config().reconcile_after_secs as i64);
                if waited < window {
                    // Meta's status webhook carries our key and links the
                    // wamid; give it time before concluding nothing was
                    // accepted.
                    let left = (window - waited).to_std().unwrap_or_default();
                    return Err(JobError::Snooze(left.min(Duration::from_secs(30))));
                }
                tracing::warn!(message = %m.id, "no status webhook for an uncertain attempt: sending again");
            }
            Err(e) => return Err(JobError::Retry(e.into())),
        }
    }

    // 5. Pacing before the call.
    let now = ctx.now();
    let pair = RateKey::Pair(m.phone_number_id.clone(), phone.digits().to_owned());
    let limiter = app.sending.limiter();
    match limiter
        .acquire(&pair, app.sending.pair_rate())
        .await
        .map_err(|e| JobError::Retry(e.into()))?
    {
        Acquired::Now => {}
        Acquired::Wait(d) => return Err(JobError::Snooze(d)),
    }
    let max_inline = Duration::from_millis(app.sending.config().max_inline_wait_ms);
    let key_n = RateKey::Number(m.phone_number_id.clone());
    let mut waited = Duration::ZERO;
    loop {
        let rate =
            app.sending
                .number_rate(&number.phone_number_id, number.messages_per_second, now);
        match limiter
            .acquire(&key_n, rate)
            .await
            .map_err(|e| JobError::Retry(e.into()))?
        {
            Acquired::Now => break,
            Acquired::Wait(d) if waited + d <= max_inline => {
                waited += d;
                tokio::time::sleep(d).await;
            }
            Acquired::Wait(d) => return Err(JobError::Snooze(d)),
        }
    }

    // 6. Record the attempt, call, record the outcome.
    if !mark_sending(&ctx, tenant, m.id).await? {
        // Withdrawn since it was read (its campaign was cancelled): the
        // message is final with its reason; nothing goes to Meta.
        tracing::info!(message = %m.id, "message withdrawn before sending");
        let mut tx = app.db.tenant_tx(tenant).await?;
        ctx.complete_in(&mut tx).await?;
        tx.commit().await?;
        return Ok(());
    }
    let body = graph_body(&m, phone.digits(), &key);
    let result = api
        .send(&SendRequest {
            phone_number_id: &m.phone_number_id,
            access_token: connection::token(&conn),
            body: &body,
        })
        .await;
    match result {
        Ok(accepted) => {
            metrics::counter!("galantis_sends_total", "outcome" => "accepted", "code" => "0")
                .increment(1);
            finish_accepted(
                &ctx,
                &m,
                Some((Some(accepted.wamid), accepted.sandbox || conn.sandbox)),
            )
            .await
        }
        Err(e) => failed(&ctx, &m, &conn, e).await,
    }
}

/// Step 6's mark for message `id`, committed before the call: in the
/// tenant's next group of send writes, or alone if that group failed.
/// `false`: the message was withdrawn meanwhile and must not be sent.
async fn mark_sending(ctx: &JobContext, tenant: TenantId, id: Uuid) -> Result<bool, JobError> {
    if let Ok(Recorded::Sending(marked)) = ctx
        .app
        .send_recorder
        .submit(tenant, recorder::SendWrite::Sending { message_id: id })
        .await
    {
        return Ok(marked);
    }
    let mut tx = ctx.app.db.tenant_tx(tenant).await?;
    let marked = store::mark_sending(&mut tx, id, ctx.now().timestamp_millis()).await?;
    tx.commit().await?;
    Ok(marked)
}

/// The Graph API body for message `m` to `to` (digits).
fn graph_body(m: &Outbound, to: &str, key: &str) -> Value {
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": m.kind,
        "biz_opaque_callback_data": key,
    });
    if let Some(v) = m.content.get(m.kind.as_str()) {
        body[m.kind.as_str()] = v.clone();
    }
    body
}

/// Records an acceptance (if not yet), settles credits and completes the
/// job, in one transaction: the tenant's next group of send writes
/// (`recorder`), or alone when the group could not take it. It no longer takes the tenant lock: on
/// PostgreSQL it serialises with the status webhooks of the same message
/// only — through the wamid's lock (a status that overtook the answer is
/// either recorded before this looks for early statuses, or finds the wamid
/// stored) and the message's row (a `failed` racing the charge sees the
/// charge, or this sees the `failed` and refunds). Charges of one tenant
/// still serialise on the billing account's row, from the charge to commit
/// only. See ADR 0005.
async fn finish_accepted(
    ctx: &JobContext,
    m: &Outbound,
    accepted: Option<(Option<String>, bool)>,
) -> Result<(), JobError> {
    let acceptance = recorder::Acceptance {
        message_id: m.id,
        billable: m.billable,
        wamid: accepted
            .as_ref()
            .and_then(|(w, _)| w.clone())
            .or_else(|| m.wamid.clone()),
        accepted: accepted.clone(),
    };
    let write = recorder::SendWrite::Accepted(Box::new(recorder::AcceptedWrite {
        job: ctx.job.clone(),
        acceptance,
    }));
    if let Ok(Recorded::Accepted) = ctx
        .app
        .send_recorder
        .submit(ctx.tenant_required()?, write)
        .await
    {
        ctx.completed_by_group();
        return Ok(());
    }
    // Alone. A transaction that lost a race it cannot win by waiting (a
    // period rolled over after it was read, a deadlock PostgreSQL broke) is
    // tried again at once: failing the job would forget the wamid and send
    // the retry through reconciliation.
    let mut tries = 1;
    loop {
        match finish_once(ctx, m, &accepted).await {
            Err(JobError::Retry(e)) if tries < 3 && lost_race(&e) => {
                tracing::debug!(message = %m.id, error = %format!("{e:#}"), "recording the acceptance again");
                tries += 1;
            }
            r => return r,
        }
    }
}

fn lost_race(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<StoreError>() {
        Some(StoreError::Conflict("billing_period_changed")) => true,
        Some(StoreError::Database(sqlx::Error::Database(db))) => {
            // deadlock_detected, serialization_failure
            matches!(db.code().as_deref(), Some("40P01" | "40001"))
        }
        _ => false,
    }
}

async fn finish_once(
    ctx: &JobContext,
    m: &Outbound,
    accepted: &Option<(Option<String>, bool)>,
) -> Result<(), JobError> {
    let tenant = ctx.tenant().expect("checked");
    let now = ctx.now();
    let mut tx = ctx.app.db.tenant_tx(tenant).await?;
    // Locks in one order everywhere: tenant (only to roll a period over,
    // inside `account`), wamid, message row, billing account row.
    let period = if m.billable {
        Some(billing::account(&mut tx, now).await?.period)
    } else {
        None
    };
    let wamid = accepted
        .as_ref()
        .and_then(|(w, _)| w.clone())
        .or_else(|| m.wamid.clone());
    if let Some(w) = &wamid {
        store::lock_wamid(&mut tx, w).await?;
    }
    let settling = store::record_acceptance(
        &mut tx,
        m.id,
        accepted
            .as_ref()
            .map(|(w, sandbox)| (w.as_deref(), *sandbox)),
        now.timestamp_millis(),
    )
    .await?;
    ctx.complete_in(&mut tx).await?;
    if let Some(s) = &settling {
        credits::settle(&mut tx, s, period.as_deref(), now).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The message can never be sent: FAILED with the reason; nothing charged.
async fn reject(
    ctx: &JobContext,
    m: &Outbound,
    code: Option<i64>,
    reason: &str,
) -> Result<(), JobError> {
    let tenant = ctx.tenant().expect("checked");
    let mut tx = ctx.app.db.tenant_tx(tenant).await?;
    store::mark_rejected(&mut tx, m.id, code, reason, ctx.now().timestamp_millis()).await?;
    ctx.complete_in(&mut tx).await?;
    tx.commit().await?;
    let code_label = code.map_or("none".to_owned(), |c| c.to_string());
    metrics::counter!("galantis_sends_total", "outcome" => "failed", "code" => code_label)
        .increment(1);
    tracing::info!(message = %m.id, reason, "send refused");
    Ok(())
}

async fn failed(
    ctx: &JobContext,
    m: &Outbound,
    conn: &Resolved,
    e: SendError,
) -> Result<(), JobError> {
    let tenant = ctx.tenant().expect("checked");
    let app = &ctx.app;
    let now = ctx.now();
    let now_ms = now.timestamp_millis();
    let (code, reason) = match &e {
        SendError::Meta(me) => (Some(me.code), me.reason()),
        SendError::Transport { message, .. } => (None, format!("no answer from Meta: {message}")),
    };
    let code_label = code.map_or("transport".to_owned(), |c| c.to_string());
    match e.class() {
        ErrorClass::Permanent => {
            metrics::counter!("galantis_sends_total", "outcome" => "failed", "code" => code_label)
                .increment(1);
            let mut tx = app.db.tenant_tx(tenant).await?;
            store::mark_rejected(&mut tx, m.id, code, &reason, now_ms).await?;
            ctx.complete_in(&mut tx).await?;
            tx.commit().await?;
            Ok(())
        }
        ErrorClass::TenantHalting => {
            metrics::counter!("galantis_sends_total", "outcome" => "held", "code" => code_label)
                .increment(1);
            let mut tx = app.db.tenant_tx(tenant).await?;
            store::clear_sending(&mut tx, m.id, now_ms).await?;
            let halted = store::halt(
                &mut tx,
                code.unwrap_or(0),
                &format!("Meta error {}: {reason}", code.unwrap_or(0)),
                now_ms,
            )
            .await?;
            tx.commit().await?;
            app.sending.invalidate(tenant);
            if halted {
                metrics::counter!("galantis_whatsapp_halts_total", "code" => code.unwrap_or(0).to_string())
                    .increment(1);
                // Never labelled by tenant: tenant ids are not for whoever
                // reads the metrics (the log line names it).
                metrics::counter!("galantis_whatsapp_connection_needs_attention_total")
                    .increment(1);
                tracing::warn!(tenant = %tenant, code, "WhatsApp connection needs attention: the tenant's sends are held");
            }
            let _ = conn;
            Err(JobError::Snooze(Duration::from_secs(
                app.sending.config().hold_recheck_secs,
            )))
        }
        ErrorClass::Retryable => {
            metrics::counter!("galantis_sends_total", "outcome" => "retry", "code" => code_label)
                .increment(1);
            if code == Some(130429) {
                app.sending.throttled(&m.phone_number_id, now);
            }
            let maybe_accepted = matches!(
                e,
                SendError::Transport {
                    maybe_accepted: true,
                    ..
                }
            );
            let last = ctx.job.attempt >= ctx.job.max_attempts;
            let mut tx = app.db.tenant_tx(tenant).await?;
            if !maybe_accepted {
                store::clear_sending(&mut tx, m.id, now_ms).await?;
            }
            if last && !maybe_accepted {
                store::mark_rejected(
                    &mut tx,
                    m.id,
                    code,
                    &format!("gave up after {} attempts: {reason}", ctx.job.attempt),
                    now_ms,
                )
                .await?;
                ctx.complete_in(&mut tx).await?;
                tx.commit().await?;
                return Ok(());
            }
            tx.commit().await?;
            Err(JobError::Retry(anyhow::anyhow!("{e}")))
        }
    }
}
