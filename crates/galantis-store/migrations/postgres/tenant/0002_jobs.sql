-- Tenant jobs live in public.jobs (see the control migration).

-- Effects of the queue's probe job (`galantis jobs probe`): one row per job,
-- with how many times its effect was applied; anything but 1 is a bug.
CREATE TABLE queue_probes (
    job_id UUID PRIMARY KEY,
    runs BIGINT NOT NULL,
    ran_at BIGINT NOT NULL
);
