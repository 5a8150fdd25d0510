-- A billable message holds its credit until it is charged or released, not
-- until its status leaves QUEUED: a status webhook can move a message on
-- (through its echoed idempotency key) before the send's charge commits,
-- and the credit must not look free in between. The reservation is now
-- "send_state NULL or 'sending'" (`accepted` is only recorded with the
-- charge, `rejected` releases), read through this partial index, which
-- holds only the messages in flight.
DROP INDEX messages_outbound_pending;
CREATE INDEX messages_credit_held ON messages(send_state)
    WHERE billable AND direction = 'outbound' AND (send_state IS NULL OR send_state = 'sending');
