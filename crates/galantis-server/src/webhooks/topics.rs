//! The topics Galantis processes. Anything else is stored as `ignored`.

pub const SHOPIFY_TOPICS: &[&str] = &[
    "customers/create",
    "customers/update",
    "customers/delete",
    "customers/marketing_consent_update",
    "customers/marketing_consent_updated",
    "customer_tags/added",
    "customer_tags/removed",
    "orders/create",
    "orders/updated",
    "orders/cancelled",
    "products/create",
    "products/update",
    "products/delete",
    "collections/create",
    "collections/update",
    "collections/delete",
    "checkouts/create",
    "checkouts/update",
    "checkouts/delete",
    "inventory_levels/update",
    "app_subscriptions/update",
    "app_purchases_one_time/update",
    "app/uninstalled",
    "customers/redact",
    "customers/data_request",
    "shop/redact",
];

pub const META_FIELDS: &[&str] = &[
    "messages",
    "message_template_status_update",
    "user_preferences",
];

pub fn is_known_shopify(topic: &str) -> bool {
    SHOPIFY_TOPICS.contains(&topic)
}

pub fn is_known_meta(field: &str) -> bool {
    META_FIELDS.contains(&field)
}
