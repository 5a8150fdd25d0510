-- The restock fan-out pages through a variant's ACTIVE subscriptions by id
-- (`back_in_stock::active_for_variant`): with only (variant_id, status)
-- each page read and sorted every remaining subscriber of the variant
-- (18 ms per page for 10,000 on PostgreSQL, before the first send could
-- leave). A notified subscription leaves this index.
CREATE INDEX back_in_stock_active_by_variant
    ON back_in_stock_subscriptions(variant_id, id)
    WHERE status = 'ACTIVE';
