//! The topics Galantis processes. Anything else is stored as `ignored`.

/// A Shopify webhook topic Galantis handles, parsed once from the
/// `X-Shopify-Topic` string; handlers match on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShopifyTopic {
    CustomersCreate,
    CustomersUpdate,
    CustomersDelete,
    /// The seed's names for SMS consent (Shopify has sent both spellings
    /// over time); still accepted.
    CustomersMarketingConsentUpdate,
    CustomersMarketingConsentUpdated,
    /// Since API 2025-01 customers carry no consent: one topic per channel.
    SmsMarketingConsentUpdate,
    EmailMarketingConsentUpdate,
    WhatsAppMarketingConsentUpdate,
    /// The seed's tag topics (numeric `customer_id`); still accepted.
    CustomerTagsAdded,
    CustomerTagsRemoved,
    /// Since API 2025-01: `customerId` as a GraphQL gid, `tags`, `occurredAt`.
    CustomerTagsAddedEvent,
    CustomerTagsRemovedEvent,
    OrdersCreate,
    OrdersUpdated,
    OrdersCancelled,
    ProductsCreate,
    ProductsUpdate,
    ProductsDelete,
    CollectionsCreate,
    CollectionsUpdate,
    CollectionsDelete,
    CheckoutsCreate,
    CheckoutsUpdate,
    CheckoutsDelete,
    InventoryLevelsUpdate,
    AppSubscriptionsUpdate,
    AppPurchasesOneTimeUpdate,
    AppUninstalled,
    CustomersRedact,
    CustomersDataRequest,
    ShopRedact,
}

impl ShopifyTopic {
    pub const ALL: [ShopifyTopic; 31] = {
        use ShopifyTopic::*;
        [
            CustomersCreate,
            CustomersUpdate,
            CustomersDelete,
            CustomersMarketingConsentUpdate,
            CustomersMarketingConsentUpdated,
            SmsMarketingConsentUpdate,
            EmailMarketingConsentUpdate,
            WhatsAppMarketingConsentUpdate,
            CustomerTagsAdded,
            CustomerTagsRemoved,
            CustomerTagsAddedEvent,
            CustomerTagsRemovedEvent,
            OrdersCreate,
            OrdersUpdated,
            OrdersCancelled,
            ProductsCreate,
            ProductsUpdate,
            ProductsDelete,
            CollectionsCreate,
            CollectionsUpdate,
            CollectionsDelete,
            CheckoutsCreate,
            CheckoutsUpdate,
            CheckoutsDelete,
            InventoryLevelsUpdate,
            AppSubscriptionsUpdate,
            AppPurchasesOneTimeUpdate,
            AppUninstalled,
            CustomersRedact,
            CustomersDataRequest,
            ShopRedact,
        ]
    };

    /// Shopify's name of the topic.
    pub fn as_str(self) -> &'static str {
        use ShopifyTopic::*;
        match self {
            CustomersCreate => "customers/create",
            CustomersUpdate => "customers/update",
            CustomersDelete => "customers/delete",
            CustomersMarketingConsentUpdate => "customers/marketing_consent_update",
            CustomersMarketingConsentUpdated => "customers/marketing_consent_updated",
            SmsMarketingConsentUpdate => "customers_marketing_consent/update",
            EmailMarketingConsentUpdate => "customers_email_marketing_consent/update",
            WhatsAppMarketingConsentUpdate => "customers_whats_app_marketing_consent/update",
            CustomerTagsAdded => "customer_tags/added",
            CustomerTagsRemoved => "customer_tags/removed",
            CustomerTagsAddedEvent => "customer.tags_added",
            CustomerTagsRemovedEvent => "customer.tags_removed",
            OrdersCreate => "orders/create",
            OrdersUpdated => "orders/updated",
            OrdersCancelled => "orders/cancelled",
            ProductsCreate => "products/create",
            ProductsUpdate => "products/update",
            ProductsDelete => "products/delete",
            CollectionsCreate => "collections/create",
            CollectionsUpdate => "collections/update",
            CollectionsDelete => "collections/delete",
            CheckoutsCreate => "checkouts/create",
            CheckoutsUpdate => "checkouts/update",
            CheckoutsDelete => "checkouts/delete",
            InventoryLevelsUpdate => "inventory_levels/update",
            AppSubscriptionsUpdate => "app_subscriptions/update",
            AppPurchasesOneTimeUpdate => "app_purchases_one_time/update",
            AppUninstalled => "app/uninstalled",
            CustomersRedact => "customers/redact",
            CustomersDataRequest => "customers/data_request",
            ShopRedact => "shop/redact",
        }
    }

    /// `None` for a topic Galantis does not handle.
    pub fn parse(topic: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == topic)
    }
}

impl std::fmt::Display for ShopifyTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub const META_FIELDS: &[&str] = &[
    "messages",
    "message_template_status_update",
    "user_preferences",
];

pub fn is_known_shopify(topic: &str) -> bool {
    ShopifyTopic::parse(topic).is_some()
}

pub fn is_known_meta(field: &str) -> bool {
    META_FIELDS.contains(&field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_parses_back_and_names_are_unique() {
        let mut names: Vec<&str> = ShopifyTopic::ALL.iter().map(|t| t.as_str()).collect();
        for t in ShopifyTopic::ALL {
            assert_eq!(ShopifyTopic::parse(t.as_str()), Some(t));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ShopifyTopic::ALL.len());
        assert_eq!(ShopifyTopic::parse("carts/create"), None);
        assert_eq!(ShopifyTopic::parse("Customers/Create"), None);
        assert_eq!(
            ShopifyTopic::parse("customers_whats_app_marketing_consent/update"),
            Some(ShopifyTopic::WhatsAppMarketingConsentUpdate)
        );
        assert_eq!(
            ShopifyTopic::parse("customer.tags_added"),
            Some(ShopifyTopic::CustomerTagsAddedEvent)
        );
    }
}
