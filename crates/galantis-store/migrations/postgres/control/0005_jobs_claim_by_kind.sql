-- Workers claim only the kinds they have handlers for (`kind = ANY(...)`):
-- during a rolling deploy jobs of a kind that old nodes do not know wait
-- in the lane, and this index lets a claim reach the known kinds without
-- walking past them. jobs_claim still serves the common case (every kind
-- known) in claim order.
CREATE INDEX jobs_claim_kind ON jobs(lane, kind, priority, run_at, id) WHERE state = 'available';
