//! `products/*` and `inventory_levels/update`: the catalog, and restocks.

use galantis_core::DomainEvent;
use galantis_store::TenantTx;
use galantis_store::tenant::catalog::{self, ProductFields, Restock, VariantFields};
use serde_json::{Value, json};

use super::super::parse::{int, string, tags};
use super::{HandlerError, Outcome, id_of};
use crate::jobs::JobContext;
use crate::jobs::kinds::collections::enqueue_sync;

fn restocked(r: &Restock) -> DomainEvent {
    DomainEvent::VariantRestocked {
        variant_id: r.variant_id,
        shopify_variant_id: r.shopify_variant_id,
        shopify_product_id: r.shopify_product_id,
        previous_quantity: r.previous_quantity,
        quantity: r.quantity,
    }
}

/// `products/create` and `products/update`.
pub(super) async fn upsert(
    tx: &mut TenantTx,
    p: &Value,
    version: i64,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let variants = p
        .get("variants")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| {
            Some(VariantFields {
                shopify_variant_id: int(v.get("id"))?,
                title: string(v.get("title")),
                sku: string(v.get("sku")),
                price: string(v.get("price")),
                compare_at_price: string(v.get("compare_at_price")),
                inventory_quantity: int(v.get("inventory_quantity")),
                inventory_item_id: int(v.get("inventory_item_id")),
                option1: string(v.get("option1")),
                option2: string(v.get("option2")),
                option3: string(v.get("option3")),
                image_id: int(v.get("image_id")),
                position: int(v.get("position")),
            })
        })
        .collect();
    let f = ProductFields {
        shopify_product_id: id_of(p, "id")?,
        title: string(p.get("title")),
        body_html: string(p.get("body_html")),
        vendor: string(p.get("vendor")),
        product_type: string(p.get("product_type")),
        handle: string(p.get("handle")),
        status: string(p.get("status")),
        tags: tags(p.get("tags")),
        images: p.get("images").cloned().unwrap_or(json!([])),
        options: p.get("options").cloned().unwrap_or(json!([])),
        payload: p.clone(),
        version,
        variants,
    };
    let r = catalog::upsert_product(tx, &f, now).await?;
    if r.skipped {
        out.ignored = Some("stale update, or the product was deleted".into());
        return Ok(());
    }
    if r.unchanged {
        out.ignored = Some("identical to the stored product: no new version".into());
        return Ok(());
    }
    let shopify_product_id = f.shopify_product_id;
    let ev = if r.created {
        DomainEvent::ProductCreated { shopify_product_id }
    } else {
        DomainEvent::ProductUpdated { shopify_product_id }
    };
    out.event(tx, ev).await?;
    for restock in &r.restocks {
        out.event(tx, restocked(restock)).await?;
    }
    Ok(())
}

/// `products/delete`.
pub(super) async fn delete(
    ctx: &JobContext,
    tx: &mut TenantTx,
    p: &Value,
    now: i64,
    out: &mut Outcome,
) -> Result<(), HandlerError> {
    let id = id_of(p, "id")?;
    if catalog::product_deleted(tx, id).await? {
        out.ignored = Some(format!("product {id} is already deleted"));
        return Ok(());
    }
    catalog::delete_product(tx, id, now).await?;
    // Shopify drops a deleted product from its collections: so do the
    // stored contents, and the segments that mention those collections are
    // re-evaluated by their sync.
    for c in catalog::remove_product_from_collections(tx, id).await? {
        enqueue_sync(tx, c, ctx.now()).await?;
    }
    let ev = DomainEvent::ProductDeleted {
        shopify_product_id: id,
    };
    out.event(tx, ev).await?;
    Ok(())
}

/// `inventory_levels/update`.
pub(super) async fn inventory_level(
    tx: &mut TenantTx,
    p: &Value,
    version: i64,
    out: &Outcome,
) -> Result<(), HandlerError> {
    let item = id_of(p, "inventory_item_id")?;
    let location = id_of(p, "location_id")?;
    let available = int(p.get("available")).unwrap_or(0);
    if let Some(r) = catalog::apply_inventory_level(tx, item, location, available, version).await? {
        out.event(tx, restocked(&r)).await?;
    }
    Ok(())
}
