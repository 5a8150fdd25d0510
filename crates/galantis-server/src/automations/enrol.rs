//! One contact into one automation through the gate (consent → rolling cap
//! → exclusions), and the enrolment of existing members at activation.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use galantis_core::automation::{
    Audience, AutomationStatus, ExclusionKind, Flow, FrequencyCap, TriggerFact, TriggerKind, gate,
};
use galantis_store::tenant::automations::{Automation, activity, runs};
use galantis_store::tenant::contacts::{self, Contact};
use galantis_store::tenant::{lists, segments};
use galantis_store::{StoreError, TenantTx};
use uuid::Uuid;

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
    let (outcome, new) = enrol_many(tx, a, &[(contact_id, fact)], now)
        .await?
        .pop()
        .expect("one outcome per candidate");
    let Some((run, contact)) = new else {
        return Ok(outcome);
    };
    match first {
        FirstStep::Job => super::engine::queue_start(tx, run.id, now).await?,
        FirstStep::Now(conn) => {
            if let Some(version) = versions::current(a) {
                super::engine::start_inline(tx, &run, &version, contact, conn, now).await?;
            }
        }
    }
    Ok(outcome)
}

/// A new run and its contact as the gate read it.
pub(super) type NewRun = (runs::Run, Contact);

/// [`enrol`] for many (contact, fact) candidates at once, set-based (a
/// restock page): one read of the contacts, one of their prior runs, one
/// insert of the new runs; the gate per candidate in memory. Per
/// candidate, in order: what happened and, when enrolled, the new run
/// with its contact. No first step is taken or queued.
pub(super) async fn enrol_many(
    tx: &mut TenantTx,
    a: &Automation,
    candidates: &[(Uuid, &TriggerFact)],
    now: DateTime<Utc>,
) -> Result<Vec<(Enrolment, Option<NewRun>)>, StoreError> {
    let not_active = || {
        candidates
            .iter()
            .map(|_| (Enrolment::NotActive, None))
            .collect()
    };
    if a.status != AutomationStatus::Active {
        return Ok(not_active());
    }
    let Some(version) = versions::current(a) else {
        return Ok(not_active());
    };
    let trigger_node = version
        .flow
        .trigger()
        .map(|(n, _)| n.id.as_str())
        .unwrap_or_default();
    let now_ms = now.timestamp_millis();
    let mut ids: Vec<Uuid> = candidates.iter().map(|(c, _)| *c).collect();
    ids.sort_unstable();
    ids.dedup();
    let people = contacts::get_many(tx, &ids).await?;
    // Prior runs per key; a page has one key, so this is one read.
    let mut prior = HashMap::new();
    for key in candidates.iter().map(|(_, f)| f.key.as_str()) {
        if !prior.contains_key(key) {
            prior.insert(key, runs::prior_many(tx, a.id, &ids, key).await?);
        }
    }
    // No cap set cannot pass validation; treat it as the strictest.
    let cap = a.frequency_cap.unwrap_or(FrequencyCap::Ever);
    let mut outcomes: Vec<Option<Enrolment>> = Vec::with_capacity(candidates.len());
    let mut contexts = Vec::new();
    for (contact_id, fact) in candidates {
        let Some(contact) = people.get(contact_id).filter(|c| !c.deleted) else {
            outcomes.push(Some(Enrolment::Blocked("contact_not_found")));
            continue;
        };
        // A duplicate event finds its run before the cap sees it.
        let (duplicate, last) = prior[fact.key.as_str()]
            .get(contact_id)
            .copied()
            .unwrap_or((false, None));
        if duplicate {
            outcomes.push(Some(Enrolment::Duplicate));
            continue;
        }
        let excluded = excluded(tx, a, *contact_id).await?;
        if let Err(refusal) = gate(contact.marketing_state, cap, last, excluded, now) {
            let code = refusal.code();
            activity::log_blocked(tx, a.id, *contact_id, trigger_node, &fact.key, code, now_ms)
                .await?;
            metrics::counter!("galantis_flow_enrolments_total", "outcome" => code).increment(1);
            outcomes.push(Some(Enrolment::Blocked(code)));
            continue;
        }
        contexts.push(serde_json::to_value(&fact.variables).unwrap_or_default());
        outcomes.push(None);
    }
    let wanted: Vec<(usize, &(Uuid, &TriggerFact))> = outcomes
        .iter()
        .zip(candidates)
        .enumerate()
        .filter(|(_, (o, _))| o.is_none())
        .map(|(i, (_, c))| (i, c))
        .collect();
    let new: Vec<runs::NewRun<'_>> = wanted
        .iter()
        .zip(&contexts)
        .map(|((_, (contact_id, fact)), context)| runs::NewRun {
            automation_id: a.id,
            version: a.current_version,
            contact_id: *contact_id,
            trigger_key: &fact.key,
            trigger_event_id: None,
            order_id: fact.order_id,
            checkout_id: fact.checkout_id,
            variant_id: fact.variant_id,
            context,
        })
        .collect();
    let created = runs::enrol_many(tx, &new, now_ms).await?;
    let mut out: Vec<(Enrolment, Option<NewRun>)> = outcomes
        .into_iter()
        .map(|o| (o.unwrap_or(Enrolment::Duplicate), None))
        .collect();
    let mut enrolled = 0;
    for ((i, (contact_id, _)), run) in wanted.into_iter().zip(created) {
        // A run created by another transaction since the read, or for the
        // same contact and key earlier in `candidates`, is a duplicate.
        let Some(run) = run else { continue };
        let contact = people
            .get(contact_id)
            .cloned()
            .expect("the gate read this contact");
        enrolled += 1;
        out[i] = (Enrolment::Enrolled(run.id), Some((run, contact)));
    }
    metrics::counter!("galantis_flow_enrolments_total", "outcome" => "enrolled")
        .increment(enrolled);
    Ok(out)
}

/// Whether one of `a`'s exclusions holds `contact_id`.
async fn excluded(tx: &mut TenantTx, a: &Automation, contact_id: Uuid) -> Result<bool, StoreError> {
    for ex in &a.exclusions {
        let member = match ex.kind {
            ExclusionKind::List => lists::is_member(tx, ex.id, contact_id).await?,
            ExclusionKind::Segment => segments::is_member(tx, ex.id, contact_id).await?,
        };
        if member {
            return Ok(true);
        }
    }
    Ok(false)
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
