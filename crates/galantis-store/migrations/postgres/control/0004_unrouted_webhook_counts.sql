-- Unrouted webhook changes are counted, not stored one row each: one row per
-- (source, origin, hour) with how many arrived and the first one's payload as
-- a sample, so a flood for an unknown number costs one row an hour.
ALTER TABLE unrouted_webhook_events ADD COLUMN hour_start BIGINT NOT NULL DEFAULT 0;
ALTER TABLE unrouted_webhook_events ADD COLUMN change_count BIGINT NOT NULL DEFAULT 1;
ALTER TABLE unrouted_webhook_events ADD COLUMN last_seen_at BIGINT NOT NULL DEFAULT 0;

UPDATE unrouted_webhook_events
SET hour_start = received_at - (received_at % 3600000), last_seen_at = received_at;

-- Fold the rows stored one per change so far into the first row of their hour.
UPDATE unrouted_webhook_events
SET change_count = (
        SELECT COUNT(*) FROM unrouted_webhook_events o
        WHERE o.source = unrouted_webhook_events.source
          AND o.origin = unrouted_webhook_events.origin
          AND o.hour_start = unrouted_webhook_events.hour_start),
    last_seen_at = (
        SELECT MAX(o.received_at) FROM unrouted_webhook_events o
        WHERE o.source = unrouted_webhook_events.source
          AND o.origin = unrouted_webhook_events.origin
          AND o.hour_start = unrouted_webhook_events.hour_start);
DELETE FROM unrouted_webhook_events
WHERE EXISTS (
    SELECT 1 FROM unrouted_webhook_events o
    WHERE o.source = unrouted_webhook_events.source
      AND o.origin = unrouted_webhook_events.origin
      AND o.hour_start = unrouted_webhook_events.hour_start
      AND o.id < unrouted_webhook_events.id);

CREATE UNIQUE INDEX unrouted_webhook_events_by_hour
    ON unrouted_webhook_events (source, origin, hour_start);
