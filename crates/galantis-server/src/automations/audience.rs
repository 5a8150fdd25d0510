//! Whom a trigger enrols when the event names no contact (a variant's
//! subscribers are paged by [`super::restock`]).

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
