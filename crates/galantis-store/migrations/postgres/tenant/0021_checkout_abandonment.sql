-- The abandoned-checkout timer's state, on the checkout itself: when the
-- timer is due (NULL: disarmed), and the checkout version (Shopify's
-- updated_at, epoch ms) a CheckoutAbandoned event was recorded for, so an
-- episode is recorded once however often its job runs.
ALTER TABLE checkouts ADD COLUMN abandon_due_at BIGINT;
ALTER TABLE checkouts ADD COLUMN abandoned_version BIGINT;
ALTER TABLE checkouts ADD COLUMN abandoned_at BIGINT;
