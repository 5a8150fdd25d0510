-- Workers claim only the kinds they have handlers for (`kind IN (...)`):
-- jobs of a kind this node does not know wait in the lane for one that
-- does, and this index lets a claim reach the known kinds without walking
-- past them.
CREATE INDEX jobs_claim_kind ON jobs(lane, state, kind, priority, run_at, id);
