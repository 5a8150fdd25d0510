-- Automations (issue 15): flows, their versions, one run per enrolment and
-- the activity of every node visit. Times are epoch milliseconds.

-- `status`: INACTIVE (draft), ACTIVE, PAUSED. `trigger` and `trigger_param`
-- (tag, segment or list id) copy the current version's TriggerNode so the
-- subscribers find the automations an event concerns by index.
-- `activated_at` is the last time the automation became ACTIVE (activation
-- or resume): events from before it never enrol. Deleted automations keep
-- their rows (runs and activity refer to them) with `deleted_at`.
CREATE TABLE automations (
    id UUID PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'INACTIVE' CHECK (status IN ('INACTIVE', 'ACTIVE', 'PAUSED')),
    current_version INTEGER NOT NULL,
    frequency_cap TEXT,
    exclusions JSONB NOT NULL,
    include_existing_users BOOLEAN NOT NULL DEFAULT FALSE,
    trigger TEXT,
    trigger_param TEXT,
    activated_at BIGINT,
    deleted_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX automations_trigger ON automations(trigger, status) WHERE deleted_at IS NULL;

-- Each run keeps the version it enrolled with; editing an automation that
-- is active or has runs adds a version.
CREATE TABLE automation_versions (
    automation_id UUID NOT NULL REFERENCES automations(id),
    version INTEGER NOT NULL,
    flow JSONB NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (automation_id, version)
);

-- One run per (automation, contact, trigger event): a duplicate event
-- enrols nobody twice. `state` is the engine's RunState; `waiting_for`
-- (reply, message_status, reply_or_message_status) indexes runs waiting on
-- a condition so an inbound message or a status wakes them without polling.
CREATE TABLE automation_runs (
    id UUID PRIMARY KEY NOT NULL,
    automation_id UUID NOT NULL REFERENCES automations(id),
    version INTEGER NOT NULL,
    contact_id UUID NOT NULL,
    trigger_key TEXT NOT NULL,
    trigger_event_id UUID,
    order_id UUID,
    checkout_id UUID,
    variant_id UUID,
    context JSONB NOT NULL,
    state JSONB NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ACTIVE', 'WAITING', 'COMPLETED', 'FAILED', 'SKIPPED')),
    current_node TEXT,
    waiting_for TEXT,
    wait_until BIGINT,
    last_message_id UUID,
    end_reason TEXT,
    started_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    ended_at BIGINT
);
CREATE UNIQUE INDEX automation_runs_enrolment ON automation_runs(automation_id, contact_id, trigger_key);
CREATE INDEX automation_runs_cap ON automation_runs(automation_id, contact_id, started_at);
CREATE INDEX automation_runs_waiting ON automation_runs(contact_id, waiting_for) WHERE waiting_for IS NOT NULL;
CREATE INDEX automation_runs_last_message ON automation_runs(last_message_id) WHERE last_message_id IS NOT NULL;
CREATE INDEX automation_runs_checkout ON automation_runs(checkout_id) WHERE checkout_id IS NOT NULL;
CREATE INDEX automation_runs_status ON automation_runs(automation_id, status);

-- One row per node visit (run, node, visit) with a time per transition.
-- Blocked enrolments are rows without a run, at the trigger node, SKIPPED
-- with the gate's reason; one per (automation, contact, trigger event).
CREATE TABLE automation_activity (
    id UUID PRIMARY KEY NOT NULL,
    run_id UUID REFERENCES automation_runs(id),
    automation_id UUID NOT NULL REFERENCES automations(id),
    contact_id UUID NOT NULL,
    node_id TEXT NOT NULL,
    visit INTEGER NOT NULL,
    trigger_key TEXT,
    status TEXT NOT NULL CHECK (status IN ('PENDING', 'SCHEDULED', 'COMPLETED', 'FAILED', 'SKIPPED')),
    reason TEXT,
    message_id UUID,
    pending_at BIGINT,
    scheduled_at BIGINT,
    completed_at BIGINT,
    failed_at BIGINT,
    skipped_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX automation_activity_visit ON automation_activity(run_id, node_id, visit) WHERE run_id IS NOT NULL;
CREATE UNIQUE INDEX automation_activity_blocked ON automation_activity(automation_id, contact_id, trigger_key) WHERE run_id IS NULL;
CREATE INDEX automation_activity_automation ON automation_activity(automation_id, id);
CREATE INDEX automation_activity_contact ON automation_activity(contact_id, id);
CREATE INDEX automation_activity_message ON automation_activity(message_id) WHERE message_id IS NOT NULL;
