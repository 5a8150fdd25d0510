//! One contact into one automation through the gate (consent → rolling cap
//! → exclusions), and the enrolment of existing members at activation.

use chrono::{DateTime, Utc};
use galantis_core::automation::{
    Audience, AutomationStatus, ExclusionKind, Flow, FrequencyCap, TriggerFact, TriggerKind, gate,
};
use galantis_store::tenant::automations::{Automation, activity, runs};
use galantis_store::tenant::{contacts, lists, segments};
use galantis_store::{StoreError, TenantTx};
use uuid::Uuid;

use super::engine::{StepInput, StepJob};
use super::versions;
use crate::sending::connection::Resolved;

/// What [`enrol`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolment {
    /// A new run (its first step is enqueued).
    Enrolled(Uuid),
    /// Already enrolled for this trigger key (a duplicate event).
    Duplicate,
    /// Refused by the gate, logged with this reason code.
    Blocked(&'static str),
    /// The automation is not ACTIVE or its flow does not parse.
    NotActive,
}

/// Enrols one contact in one automation for `fact` through the gate
/// (consent → rolling cap → exclusions). One run per (automation, contact,
/// `fact.key`); a refusal is logged once per key with its reason. The
/// run's first step is a `Start` job.
pub async fn enrol(
    tx: &mut TenantTx,
    a: &Automation,
    contact_id: Uuid,
    fact: &TriggerFact,
    now: DateTime<Utc>,
) -> Result<Enrolment, StoreError> {
    enrol_with(tx, a, contact_id, fact, now, FirstStep::Job).await
}

/// Who takes a new run's first step.
#[derive(Clone, Copy)]
pub(super) enum FirstStep<'a> {
    /// A `Start` job.
    Job,
    /// The caller (the restock fan-out, for a batch of runs at once).
    Caller,
    /// [`enrol_with`] itself, in the enrolment's transaction, queueing a
    /// send on this connection (without one, a step that sends is left
    /// to a `Start` job).
    Now(Option<&'a Resolved>),
}

/// [`enrol`], with who takes the run's first step.
pub(super) async fn enrol_with(
    tx: &mut TenantTx,
    a: &Automation,
    contact_id: Uuid,
    fact: &TriggerFact,
    now: DateTime<Utc>,
    first: FirstStep<'_>,
) -> Result<Enrolment, StoreError> {
    if a.status != AutomationStatus::Active {
        return Ok(Enrolment::NotActive);
    }
    let Some(version) = versions::current(a) else {
        return Ok(Enrolment::NotActive);
    };
    let trigger_node = version
        .flow
        .trigger()
        .map(|(n, _)| n.id.as_str())
        .unwrap_or_default();
    let now_ms = now.timestamp_millis();
    let Some(contact) = contacts::get(tx, contact_id).await?.filter(|c| !c.deleted) else {
        return Ok(Enrolment::Blocked("contact_not_found"));
    };
    // A duplicate event finds its run before the cap sees it.
    let (duplicate, last) = runs::prior(tx, a.id, contact_id, &fact.key).await?;
    if duplicate {
        return Ok(Enrolment::Duplicate);
    }
    let mut excluded = false;
    for ex in &a.exclusions {
        excluded |= match ex.kind {
            ExclusionKind::List => lists::is_member(tx, ex.id, contact_id).await?,
            ExclusionKind::Segment => segments::is_member(tx, ex.id, contact_id).await?,
        };
        if excluded {
            break;
        }
    }
    // No cap set cannot pass validation; treat it as the strictest.
    let cap = a.frequency_cap.unwrap_or(FrequencyCap::Ever);
    if let Err(refusal) = gate(contact.marketing_state, cap, last, excluded, now) {
        let code = refusal.code();
        activity::log_blocked(tx, a.id, contact_id, trigger_node, &fact.key, code, now_ms).await?;
        metrics::counter!("galantis_flow_enrolments_total", "outcome" => code).increment(1);
        return Ok(Enrolment::Blocked(code));
    }
    let context = serde_json::to_value(&fact.variables).unwrap_or_default();
    let new = runs::NewRun {
        automation_id: a.id,
        version: a.current_version,
        contact_id,
        trigger_key: &fact.key,
        trigger_event_id: None,
        order_id: fact.order_id,
        checkout_id: fact.checkout_id,
        variant_id: fact.variant_id,
        context: &context,
    };
    let Some(run) = runs::enrol_run(tx, &new, now_ms).await? else {
        return Ok(Enrolment::Duplicate);
    };
    match first {
        FirstStep::Job => {
            let job = StepJob {
                run_id: run.id,
                input: StepInput::Start,
            };
            crate::jobs::enqueue(tx, &job, now).await?;
        }
        FirstStep::Caller => {}
        FirstStep::Now(conn) => {
            super::engine::start_inline(tx, &run, &version, contact, conn, now).await?;
        }
    }
    metrics::counter!("galantis_flow_enrolments_total", "outcome" => "enrolled").increment(1);
    Ok(Enrolment::Enrolled(run.id))
}

/// At activation with `include_existing_users`: enrols the current members
/// of a segment or list trigger's segment or list through the same gate
/// (key `existing:<activation ms>`, so a re-activation enrols again,
/// subject to the cap). Other triggers are about events, not a state, and
/// enrol nobody here. Call in the activation transaction after
/// `set_status(ACTIVE)`. Returns how many runs were created.
pub async fn activate_effects(
    tx: &mut TenantTx,
    a: &Automation,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    if !a.include_existing_users || a.status != AutomationStatus::Active {
        return Ok(0);
    }
    let Ok(flow) = Flow::parse(&a.flow) else {
        return Ok(0);
    };
    let Some((_, t)) = flow.trigger() else {
        return Ok(0);
    };
    let members = match t.trigger {
        TriggerKind::UserAddedToSegment => match t.segment_id {
            Some(s) => runs::segment_members(tx, s).await?,
            None => return Ok(0),
        },
        TriggerKind::UserAddedToList => match t.list_id {
            Some(l) => runs::list_members(tx, l).await?,
            None => return Ok(0),
        },
        _ => return Ok(0),
    };
    let at = a.activated_at.unwrap_or(now);
    let mut n = 0;
    for contact in members {
        let fact = TriggerFact {
            trigger: t.trigger,
            audience: Audience::Contact(contact),
            key: format!("existing:{}", at.timestamp_millis()),
            occurred_at: at,
            tag: None,
            segment_id: t.segment_id,
            list_id: t.list_id,
            order_id: None,
            checkout_id: None,
            variant_id: None,
            variables: Default::default(),
        };
        if let Enrolment::Enrolled(_) = enrol(tx, a, contact, &fact, now).await? {
            n += 1;
        }
    }
    Ok(n)
}
