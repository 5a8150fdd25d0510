//! Galantis' pure domain: identifiers and parsed newtypes, roles and permissions,
//! and the ports (traits) through which the rest of the system reaches the world.
//!
//! Nothing in this crate performs IO. It must not depend on sqlx, axum, reqwest or
//! tokio's networking; `tests/no_io_dependencies.rs` keeps it that way.

pub mod audience;
pub mod automation;
pub mod back_in_stock;
pub mod billing;
pub mod campaign;
pub mod checkout;
pub mod clock;
pub mod consent;
pub mod email;
pub mod events;
pub mod ids;
pub mod messaging;
pub mod phone;
pub mod queue;
pub mod roles;
pub mod secrets;
pub mod segment;
pub mod sending;
pub mod shop;
pub mod templates;
pub mod text;

pub use clock::{Clock, FixedClock, SystemClock};
pub use consent::{ConsentSource, MarketingState};
pub use email::Email;
pub use events::{DomainEvent, EventKind};
pub use ids::{JobId, MemberId, TenantId, TokenId};
pub use messaging::{MessageKind, MessageSource, MessageStatus};
pub use phone::{CountryCode, PhoneE164};
pub use queue::{JobKind, JobState, Lane, RetrySchedule, UniqueScope};
pub use roles::{Permission, Role};
pub use secrets::{KeyStore, SecretName};
pub use shop::ShopDomain;
