//! Team roles and their permissions, defined once, as data.
//!
//! Every API route names exactly one [`Permission`]; a member may call it when
//! their [`Role`] grants that permission. Roles are looked up on every request,
//! so a role change applies at once.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! permissions {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        /// A granular capability, named `area.action`.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
        pub enum Permission { $($variant),+ }

        impl Permission {
            pub const ALL: &'static [Permission] = &[$(Permission::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Permission::$variant => $name),+ }
            }
        }
    };
}

permissions! {
    TenantRead => "tenant.read",
    MembersRead => "members.read",
    MembersWrite => "members.write",
    BillingRead => "billing.read",
    BillingWrite => "billing.write",
    SettingsRead => "settings.read",
    SettingsWrite => "settings.write",
    ContactsRead => "contacts.read",
    ContactsWrite => "contacts.write",
    AudienceRead => "audience.read",
    AudienceWrite => "audience.write",
    OrdersRead => "orders.read",
    CatalogRead => "catalog.read",
    CatalogWrite => "catalog.write",
    TemplatesRead => "templates.read",
    TemplatesWrite => "templates.write",
    AutomationsRead => "automations.read",
    AutomationsWrite => "automations.write",
    AutomationsActivate => "automations.activate",
    CampaignsRead => "campaigns.read",
    CampaignsWrite => "campaigns.write",
    CampaignsSend => "campaigns.send",
    AnalyticsRead => "analytics.read",
    InboxRead => "inbox.read",
    InboxReply => "inbox.reply",
    InboxAssign => "inbox.assign",
    MessagesSend => "messages.send",
    WebhooksRead => "webhooks.read",
    WebhooksReplay => "webhooks.replay",
    JobsRead => "jobs.read",
    JobsWrite => "jobs.write",
    EventsRead => "events.read",
}

impl Permission {
    /// Read-only permissions (`*.read`).
    pub fn is_read(self) -> bool {
        self.as_str().ends_with(".read")
    }

    fn is_billing(self) -> bool {
        matches!(self, Permission::BillingRead | Permission::BillingWrite)
    }

    /// Operational views that a plain viewer has no business in.
    fn is_operational(self) -> bool {
        use Permission::*;
        matches!(
            self,
            MembersRead | SettingsRead | WebhooksRead | JobsRead | EventsRead
        )
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A team member's role. Each member has exactly one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    /// The installing merchant: everything. One per tenant.
    Owner,
    /// Everything but billing.
    Admin,
    /// Campaigns, automations, templates, audience, analytics.
    MarketingManager,
    /// Sends campaigns; views audience.
    CampaignOperator,
    /// Creates and edits templates.
    ContentCreator,
    /// Reads everything but billing.
    Analyst,
    /// Reads audience and analytics.
    DataAnalyst,
    /// Inbox and contact context.
    SupportAgent,
    /// Read only.
    Viewer,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a role; expected one of OWNER, ADMIN, MARKETING_MANAGER, CAMPAIGN_OPERATOR, CONTENT_CREATOR, ANALYST, DATA_ANALYST, SUPPORT_AGENT, VIEWER"
)]
pub struct UnknownRole(pub String);

impl Role {
    pub const ALL: [Role; 9] = [
        Role::Owner,
        Role::Admin,
        Role::MarketingManager,
        Role::CampaignOperator,
        Role::ContentCreator,
        Role::Analyst,
        Role::DataAnalyst,
        Role::SupportAgent,
        Role::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "OWNER",
            Role::Admin => "ADMIN",
            Role::MarketingManager => "MARKETING_MANAGER",
            Role::CampaignOperator => "CAMPAIGN_OPERATOR",
            Role::ContentCreator => "CONTENT_CREATOR",
            Role::Analyst => "ANALYST",
            Role::DataAnalyst => "DATA_ANALYST",
            Role::SupportAgent => "SUPPORT_AGENT",
            Role::Viewer => "VIEWER",
        }
    }

    /// Whether this role grants `permission`. This is the single source of truth.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Owner => true,
            Role::Admin => !permission.is_billing(),
            Role::Analyst => permission.is_read() && !permission.is_billing(),
            Role::Viewer => {
                permission.is_read() && !permission.is_billing() && !permission.is_operational()
            }
            Role::MarketingManager => matches!(
                permission,
                TenantRead
                    | CampaignsRead
                    | CampaignsWrite
                    | CampaignsSend
                    | AutomationsRead
                    | AutomationsWrite
                    | AutomationsActivate
                    | TemplatesRead
                    | TemplatesWrite
                    | AudienceRead
                    | AudienceWrite
                    | ContactsRead
                    | ContactsWrite
                    | OrdersRead
                    | CatalogRead
                    | AnalyticsRead
            ),
            Role::CampaignOperator => matches!(
                permission,
                TenantRead
                    | CampaignsRead
                    | CampaignsSend
                    | TemplatesRead
                    | AudienceRead
                    | ContactsRead
            ),
            Role::ContentCreator => matches!(
                permission,
                TenantRead | TemplatesRead | TemplatesWrite | CatalogRead
            ),
            Role::DataAnalyst => matches!(
                permission,
                TenantRead | AudienceRead | ContactsRead | OrdersRead | AnalyticsRead
            ),
            Role::SupportAgent => matches!(
                permission,
                TenantRead
                    | InboxRead
                    | InboxReply
                    | InboxAssign
                    | ContactsRead
                    | OrdersRead
                    | CatalogRead
                    | TemplatesRead
            ),
        }
    }

    /// Every permission this role grants, in declaration order.
    pub fn permissions(self) -> Vec<Permission> {
        Permission::ALL
            .iter()
            .copied()
            .filter(|p| self.allows(*p))
            .collect()
    }

    /// Whether a member of this role may give `other` to someone. Nobody hands
    /// out OWNER (there is one, the installing merchant), and only the owner may
    /// create admins.
    pub fn may_assign(self, other: Role) -> bool {
        match other {
            Role::Owner => false,
            Role::Admin => self == Role::Owner,
            _ => self.allows(Permission::MembersWrite),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_uppercase().replace('-', "_");
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == wanted)
            .ok_or_else(|| UnknownRole(s.chars().take(40).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("superuser".parse::<Role>().is_err());
        assert_eq!("support-agent".parse::<Role>().unwrap(), Role::SupportAgent);
    }

    #[test]
    fn owner_has_everything_and_admin_all_but_billing() {
        assert_eq!(Role::Owner.permissions().len(), Permission::ALL.len());
        assert!(!Role::Admin.allows(BillingRead));
        assert!(!Role::Admin.allows(BillingWrite));
        assert!(Role::Admin.allows(MembersWrite));
    }

    #[test]
    fn readers_never_write() {
        for role in [Role::Analyst, Role::Viewer, Role::DataAnalyst] {
            for p in role.permissions() {
                assert!(p.is_read(), "{role} must not have {p}");
            }
        }
        assert!(!Role::Analyst.allows(BillingRead));
    }

    #[test]
    fn product_roles_match_their_descriptions() {
        assert!(Role::CampaignOperator.allows(CampaignsSend));
        assert!(!Role::CampaignOperator.allows(CampaignsWrite));
        assert!(Role::ContentCreator.allows(TemplatesWrite));
        assert!(!Role::ContentCreator.allows(CampaignsSend));
        assert!(Role::SupportAgent.allows(InboxReply));
        assert!(!Role::SupportAgent.allows(CampaignsRead));
        assert!(!Role::MarketingManager.allows(InboxReply));
        assert!(Role::SupportAgent.allows(InboxAssign));
        // The inbox is the support agents' (and admins'): roles built for
        // campaigns do not answer customers.
        for role in [Role::MarketingManager, Role::CampaignOperator] {
            assert!(!role.allows(InboxReply) && !role.allows(InboxAssign));
            assert!(!role.allows(MessagesSend));
        }
        for p in [CampaignsRead, CampaignsSend, AutomationsWrite, MessagesSend] {
            assert!(!Role::SupportAgent.allows(p), "{p}");
        }
        assert!(Role::DataAnalyst.allows(AnalyticsRead));
        assert!(!Role::DataAnalyst.allows(CampaignsRead));
    }

    #[test]
    fn nobody_assigns_owner_and_only_owner_assigns_admin() {
        for role in Role::ALL {
            assert!(!role.may_assign(Role::Owner));
        }
        assert!(Role::Owner.may_assign(Role::Admin));
        assert!(!Role::Admin.may_assign(Role::Admin));
        assert!(Role::Admin.may_assign(Role::Viewer));
        assert!(!Role::Viewer.may_assign(Role::Viewer));
    }

    #[test]
    fn permission_names_are_unique() {
        let mut names: Vec<_> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Permission::ALL.len());
    }
}
