//! The topics Galantis processes. Anything else is stored as `ignored`.

/// Declares [`ShopifyTopic`] from one table of variants and Shopify's names,
/// so the enum, [`ShopifyTopic::ALL`] and [`ShopifyTopic::as_str`] cannot
/// drift apart.
macro_rules! shopify_topics {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)+) => {
        /// A Shopify webhook topic Galantis handles, parsed once from the
        /// `X-Shopify-Topic` string; handlers match on it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ShopifyTopic {
            $($(#[$doc])* $variant,)+
        }

        impl ShopifyTopic {
            pub const ALL: &'static [ShopifyTopic] = &[$(ShopifyTopic::$variant,)+];

            /// Shopify's name of the topic.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ShopifyTopic::$variant => $name,)+
                }
            }
        }
    };
}

shopify_topics! {
    CustomersCreate => "customers/create",
    CustomersUpdate => "customers/update",
    CustomersDelete => "customers/delete",
    /// The seed's names for SMS consent (Shopify has sent both spellings
    /// over time); still accepted.
    CustomersMarketingConsentUpdate => "customers/marketing_consent_update",
    CustomersMarketingConsentUpdated => "customers/marketing_consent_updated",
    /// Since API 2025-01 customers carry no consent: one topic per channel.
    SmsMarketingConsentUpdate => "customers_marketing_consent/update",
    EmailMarketingConsentUpdate => "customers_email_marketing_consent/update",
    WhatsAppMarketingConsentUpdate => "customers_whats_app_marketing_consent/update",
    /// The seed's tag topics (numeric `customer_id`); still accepted.
    CustomerTagsAdded => "customer_tags/added",
    CustomerTagsRemoved => "customer_tags/removed",
    /// Since API 2025-01: `customerId` as a GraphQL gid, `tags`, `occurredAt`.
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

impl ShopifyTopic {
    /// `None` for a topic Galantis does not handle.
    pub fn parse(topic: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.as_str() == topic)
    }
}

impl std::fmt::Display for ShopifyTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What Galantis does with a Meta webhook field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaHandling {
    /// Stored and processed by `webhooks::meta`.
    Process,
    /// Stored as `ignored` with this reason at once (nothing to do, and no
    /// reason to queue a job for it).
    Ignore(&'static str),
}

/// Every `whatsapp_business_account` field Meta documents that a Galantis
/// app may be subscribed to, with its handling. A field not listed is stored
/// as `ignored: unknown field`.
pub const META_FIELDS: &[(&str, MetaHandling)] = {
    use MetaHandling::*;
    &[
        ("messages", Process),
        ("message_template_status_update", Process),
        ("message_template_quality_update", Process),
        ("message_template_components_update", Process),
        ("template_category_update", Process),
        ("user_preferences", Process),
        ("account_update", Process),
        ("phone_number_quality_update", Process),
        ("smb_message_echoes", Process),
        (
            "calls",
            Ignore("Galantis does not handle WhatsApp calls; the call stays in WhatsApp"),
        ),
        (
            "account_alerts",
            Ignore(
                "informational for the business portfolio (limit increase decisions, profile); shown in Meta's tools",
            ),
        ),
        (
            "account_review_update",
            Ignore(
                "WABA review outcomes arrive again as account_update when they restrict the account",
            ),
        ),
        (
            "business_capability_update",
            Ignore("portfolio limits; a number's own limit arrives as phone_number_quality_update"),
        ),
        (
            "phone_number_name_update",
            Ignore(
                "display name review: the name is read from Meta when the connection is verified",
            ),
        ),
        (
            "security",
            Ignore("two-step verification changes need no action from Galantis"),
        ),
        (
            "history",
            Ignore("WhatsApp Business app history sync (coexistence onboarding) is not imported"),
        ),
        (
            "smb_app_state_sync",
            Ignore(
                "WhatsApp Business app contact sync (coexistence) is not imported; contacts come from Shopify and conversations",
            ),
        ),
        (
            "automatic_events",
            Ignore("ad attribution events: Galantis runs no Click-to-WhatsApp ads"),
        ),
        (
            "partner_solutions",
            Ignore("multi-partner solution status: not used"),
        ),
        (
            "payment_configuration_update",
            Ignore("WhatsApp payments are not used; Shopify takes payment"),
        ),
        (
            "flows",
            Ignore("Flow health notifications: Galantis publishes no Flows"),
        ),
    ]
};

pub fn meta_handling(field: &str) -> Option<MetaHandling> {
    META_FIELDS
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, h)| *h)
}

pub fn is_known_shopify(topic: &str) -> bool {
    ShopifyTopic::parse(topic).is_some()
}

pub fn is_known_meta(field: &str) -> bool {
    meta_handling(field).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_parses_back_and_names_are_unique() {
        let mut names: Vec<&str> = ShopifyTopic::ALL.iter().map(|t| t.as_str()).collect();
        for &t in ShopifyTopic::ALL {
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

    #[test]
    fn every_meta_field_is_listed_once_with_a_handling() {
        let mut names: Vec<&str> = META_FIELDS.iter().map(|(f, _)| *f).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), META_FIELDS.len());
        for (field, handling) in META_FIELDS {
            assert!(is_known_meta(field));
            if let MetaHandling::Ignore(reason) = handling {
                assert!(reason.len() > 10, "{field}: a real reason");
            }
        }
        // Issue 13's list: each of these is handled, none is `unknown field`.
        for f in [
            "account_update",
            "message_template_quality_update",
            "template_category_update",
            "message_template_components_update",
            "phone_number_quality_update",
            "smb_message_echoes",
            "user_preferences",
        ] {
            assert_eq!(meta_handling(f), Some(MetaHandling::Process), "{f}");
        }
        assert!(matches!(
            meta_handling("calls"),
            Some(MetaHandling::Ignore(_))
        ));
        assert_eq!(meta_handling("carts"), None);
    }
}
