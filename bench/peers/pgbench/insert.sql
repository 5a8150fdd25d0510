-- The ingest peer of `galantis bench ingest`: one webhook-sized JSONB row per
-- transaction, as `pgbench -n -c 32 -j 2 -T S -f insert.sql URL` runs it.
-- The harness creates the table (bench_events) in a scratch database first.
INSERT INTO bench_events (topic, webhook_id, payload) VALUES ('customers/create', md5(random()::text), '{"id": 123456789, "email": "customer@example.com", "first_name": "Jane", "last_name": "Smith", "phone": "+521234567890", "tags": "vip, newsletter", "sms_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in"}, "locale": "es", "created_at": "2025-01-15T10:00:00-05:00", "updated_at": "2025-01-15T10:00:00-05:00"}'::jsonb);
