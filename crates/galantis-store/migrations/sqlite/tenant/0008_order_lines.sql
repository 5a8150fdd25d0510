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
    order_id BLOB NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    line_no INTEGER NOT NULL,
    contact_id BLOB NOT NULL,
    shopify_product_id INTEGER,
    vendor TEXT,
    PRIMARY KEY (order_id, line_no)
);

INSERT INTO order_lines (order_id, line_no, contact_id, shopify_product_id, vendor)
SELECT o.id, li.key, o.contact_id,
       CASE WHEN li.type = 'object' THEN
           CASE WHEN json_type(li.value, '$.product_id') = 'integer'
                 AND typeof(json_extract(li.value, '$.product_id')) = 'integer' -- not beyond 64 bits
                THEN json_extract(li.value, '$.product_id') END
       END,
       CASE WHEN li.type = 'object' THEN
           CASE WHEN json_type(li.value, '$.vendor') = 'text' THEN LOWER(json_extract(li.value, '$.vendor')) END
       END
FROM orders o, json_each(CASE WHEN json_type(o.line_items) = 'array' THEN o.line_items ELSE '[]' END) li
WHERE o.contact_id IS NOT NULL AND o.cancelled_at IS NULL AND o.deleted_at IS NULL;

-- "purchased brand" (semi-join over a vendor), "purchased collection"
-- (through collection_products), and the per-contact probe.
CREATE INDEX order_lines_vendor ON order_lines(vendor, contact_id);
CREATE INDEX order_lines_product ON order_lines(shopify_product_id, contact_id);
CREATE INDEX order_lines_contact ON order_lines(contact_id);
