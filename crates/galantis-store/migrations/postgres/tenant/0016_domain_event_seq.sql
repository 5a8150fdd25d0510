-- A per-tenant sequence number on domain events, for realtime clients: a
-- client that reconnects with the last number it saw gets exactly what it
-- missed. Numbers are given just before commit, under the counter row's
-- lock, so they become visible in commit order. (NULL only inside the
-- recording transaction, before that.)
ALTER TABLE domain_events ADD COLUMN seq BIGINT;
UPDATE domain_events SET seq = n.rn
    FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM domain_events) n
    WHERE domain_events.id = n.id;
CREATE UNIQUE INDEX domain_events_seq ON domain_events(seq);

CREATE TABLE domain_event_seq (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    last BIGINT NOT NULL
);
INSERT INTO domain_event_seq (id, last) SELECT 1, COALESCE(MAX(seq), 0) FROM domain_events;
