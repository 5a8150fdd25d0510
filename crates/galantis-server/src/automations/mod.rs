//! The automation engine's server side: trigger subscribers that enrol
//! contacts through the gate, run jobs that perform the pure step
//! function's effects, and wake-ups from replies and statuses (no polling).
//! Routes live elsewhere (`http::automations`, the `auto-api` branch); they
//! and the back-in-stock pipeline call the functions exported here.
//!
//! # Jobs (lane `flows`)
//!
//! `automation.trigger` (one per recorded trigger event, unique by event id),
//! in one tenant transaction with its completion:
//! 1. [`galantis_core::automation::trigger_fact`] maps the event to a
//!    trigger, its audience and enrolment key.
//! 2. The ACTIVE automations of that trigger (indexed column), minus those
//!    activated after the event occurred (`activated_at`, also stamped on
//!    resume: events while paused never enrol) and those whose trigger node
//!    does not match (tag, segment, list).
//! 3. The audience: the contact; the order's contact (orders table); a
//!    variant's `ACTIVE` back-in-stock subscribers, paged and fanned out
//!    by [`restock`] (which also creates the recipe automation).
//! 4. [`enrol`] each contact: gate (consent `SUBSCRIBED` → rolling cap per
//!    contact per automation → excluded lists/segments; a refusal is a
//!    `SKIPPED` activity row with the gate's code, once per trigger key),
//!    then insert-or-ignore the run by (automation, contact, trigger key)
//!    and take its first step in the same transaction (as
//!    `automation.step` does, below); a first step that sends while the
//!    tenant has no sending connection is left to a `Start` step job.
//!
//! `automation.step` (see [`engine`]): one transition of one run, its
//! effects, its saved state and the job's completion in one transaction:
//! 1. Lock the run; an ended run completes the job, nothing else.
//! 2. A `PAUSED` automation holds the run: the job snoozes
//!    ([`engine::PAUSED_RECHECK`]) and nothing is written.
//! 3. Load the run's version of the flow (parsed once per version:
//!    [`versions`]) and, once, the facts that version reads
//!    (`FactNeeds`: consent, values with the trigger's variables merged
//!    and tags always; template statuses when it has actions; lists,
//!    segments, the trigger order (totals, items, its products' tags),
//!    the last order's time, the last message and replies only when a
//!    condition or action reads them).
//! 4. Step, then perform the effects: activity transitions per node visit;
//!    `WaitUntil`/`WaitForEvent` schedule a job at the time, unique per
//!    (run, node, visit) and rescheduled on repeat; `Send` renders the
//!    template and queues it with `queue_in` (idempotency key
//!    `automation:<run>:<node>:<visit>`, source `automation`); a refused
//!    send makes the node `FAILED` with the refusal code and ends the run.
//! 5. Save the state (its wait columns are the indexes wake-ups use). The
//!    activity and the state are written last, one statement each
//!    ([`engine::Written`]); a restock page writes all its first steps'
//!    together (ADR 0037). A new wait for a status or a reply first reads
//!    that status or the replies again under the lock their handlers take,
//!    and queues the run's own wake-up if one committed meanwhile
//!    ([`slip`], ADRs 0036 and 0038).
//!
//! `automation.wake` (from `ConversationMessageCreated` inbound and
//! `MessageStatusUpdated` with `awaited` set, ADR 0036): finds the runs
//! waiting for a reply of that contact or the status of that message, by
//! index, and enqueues their step with the event. `CheckoutCompleted`
//! ends the runs started by that checkout (`SKIPPED`,
//! `checkout_completed`) and skips the node they waited at.

//!
//! # Decisions
//!
//! - `CUSTOMER_CREATED` fires on `CustomerCreated` (a Shopify customer,
//!   once per customer), not on `ContactCreated` (a WhatsApp sender
//!   Shopify does not know): the trigger is about the shop's customers, and
//!   an unknown sender has no marketing consent to pass the gate anyway.
//! - A refused send at an action (`queue_in`'s refusal: no credits, no
//!   calling code, not opted in at Meta's level…) fails that node with the
//!   refusal code and ends the run; the automation stays active.
//! - Paused (or deactivated) automations hold runs by snoozing their step
//!   job ([`engine::PAUSED_RECHECK`]); nothing is written while held, so a
//!   resumed run continues on its own version at its next step.
//! - `ORDER_RECENCY` reads the contact's most recent order that is not
//!   deleted (cancelled ones count, as for `contacts.last_order_at`);
//!   `PRODUCT_IN_ORDER_HAS_TAG` reads the tags of the synced products in
//!   the trigger's order, or in the contact's last order when the trigger
//!   carries none (a tag, list or segment trigger). A checkout's products
//!   are not read yet (an abandoned checkout's run reads no product tags).

pub mod audience;
pub mod engine;
mod enrol;
mod facts;
mod render;
pub mod restock;
mod slip;
mod step_batch;
mod trigger;
mod versions;
mod wake;

pub use engine::{StepInput, StepJob};
pub use enrol::{Enrolment, activate_effects, enrol};
pub use restock::RestockJob;
pub use trigger::{TriggerJob, enrol_fact, enrol_fact_with};
pub use wake::WakeJob;

use galantis_core::EventKind;
use galantis_core::automation::TriggerKind;
use galantis_store::events::EventBus;

/// Most trigger events of one tenant enrolled in one transaction.
pub const TRIGGER_BATCH: usize = 32;
/// Most steps of one tenant's runs taken in one transaction.
pub const STEP_BATCH: usize = 32;
/// Most wake-ups (replies, statuses, completed checkouts) looked up in one
/// transaction.
pub const WAKE_BATCH: usize = 32;

pub fn register(r: &mut crate::jobs::Registry) {
    r.batched::<TriggerJob, _, _>(TRIGGER_BATCH, trigger::run, trigger::run_in);
    r.batched_whole::<StepJob, _, _>(STEP_BATCH, engine::run, step_batch::run_batch);
    r.register::<restock::RestockJob, _, _>(restock::run);
    r.batched::<WakeJob, _, _>(WAKE_BATCH, wake::run, wake::run_in);
}

/// Subscribes the trigger and wake-up jobs to the recorder. Called once
/// per process when the store is opened.
pub fn subscribe(events: &EventBus) {
    for t in TriggerKind::ALL {
        events.subscribers.subscribe(
            t.event_kind(),
            "automations.trigger",
            std::sync::Arc::new(trigger::make_job),
        );
    }
    for k in [
        EventKind::ConversationMessageCreated,
        EventKind::MessageStatusUpdated,
        EventKind::CheckoutCompleted,
    ] {
        events
            .subscribers
            .subscribe(k, "automations.wake", std::sync::Arc::new(wake::make_job));
    }
}
