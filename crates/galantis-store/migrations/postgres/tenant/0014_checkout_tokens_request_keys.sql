-- Checkouts from current Shopify API versions may carry only a `token`
-- (no numeric `id`): the id becomes optional and the token identifies them.
ALTER TABLE checkouts ALTER COLUMN shopify_checkout_id DROP NOT NULL;
ALTER TABLE checkouts ADD CONSTRAINT checkouts_id_or_token CHECK (shopify_checkout_id IS NOT NULL OR token IS NOT NULL);

-- One compliance request per Shopify request: a redelivered
-- `customers/data_request` (same `data_request.id`) or `customers/redact`
-- (same customer and orders) finds its key and is not answered twice.
ALTER TABLE compliance_requests ADD COLUMN request_key TEXT;
CREATE UNIQUE INDEX compliance_requests_key ON compliance_requests(kind, request_key) WHERE request_key IS NOT NULL;
