//! Whom a trigger enrols when the event names no contact.

use galantis_store::tenant::orders;
use galantis_store::{StoreError, TenantTx};
use uuid::Uuid;

/// The contact of an order (none: nobody is enrolled).
pub async fn contact_of_order(
    tx: &mut TenantTx,
    order_id: Uuid,
) -> Result<Option<Uuid>, StoreError> {
    Ok(orders::get(tx, order_id).await?.and_then(|o| o.contact_id))
}

/// The contacts with an active back-in-stock subscription to `variant_id`.
///
/// The subscriptions table is built by the back-in-stock pipeline
/// (branch `bis-storefront`); until it lands nobody is subscribed, so
/// `BACK_IN_STOCK` enrols nobody. That pipeline replaces this body (or
/// calls [`super::enrol`] per subscriber itself).
pub async fn variant_subscribers(
    _tx: &mut TenantTx,
    _variant_id: Uuid,
) -> Result<Vec<Uuid>, StoreError> {
    Ok(Vec::new())
}
