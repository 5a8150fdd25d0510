-- The line items of the orders that count for the audience rules "purchased
-- brand" and "purchased collection", one row per line, so those rules read
-- an index instead of expanding the JSON `line_items` of every order.
--
-- Derived from `orders` and rewritten in the transaction of every order
-- write that changes what it holds (`tenant::orders::upsert`): an order has
-- rows here only while it counts, i.e. it has a contact, is not cancelled
-- and not deleted. `contact_id` is the order's. `vendor` is lower-cased;
-- `shopify_product_id` is set only for an integer JSON `product_id`, and
-- `vendor` only for a JSON string. `line_no` is the 0-based position in
-- `line_items`.
CREATE TABLE order_lines (
    order_id UUID NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    line_no BIGINT NOT NULL,
    contact_id UUID NOT NULL,
    shopify_product_id BIGINT,
    vendor TEXT,
    PRIMARY KEY (order_id, line_no)
);

INSERT INTO order_lines (order_id, line_no, contact_id, shopify_product_id, vendor)
SELECT o.id, li.n - 1, o.contact_id,
       CASE WHEN jsonb_typeof(li.item -> 'product_id') = 'number' AND (li.item ->> 'product_id') ~ '^-?[0-9]+$' THEN
           CASE WHEN (li.item ->> 'product_id')::numeric BETWEEN -9223372036854775808 AND 9223372036854775807
                THEN (li.item ->> 'product_id')::bigint END
       END,
       CASE WHEN jsonb_typeof(li.item -> 'vendor') = 'string' THEN LOWER(li.item ->> 'vendor') END
FROM orders o
CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(o.line_items) = 'array' THEN o.line_items ELSE '[]'::jsonb END)
    WITH ORDINALITY AS li(item, n)
WHERE o.contact_id IS NOT NULL AND o.cancelled_at IS NULL AND o.deleted_at IS NULL;

-- "purchased brand" (semi-join over a vendor), "purchased collection"
-- (through collection_products), and the per-contact probe.
CREATE INDEX order_lines_vendor ON order_lines(vendor, contact_id);
CREATE INDEX order_lines_product ON order_lines(shopify_product_id, contact_id);
CREATE INDEX order_lines_contact ON order_lines(contact_id);
