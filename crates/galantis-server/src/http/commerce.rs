//! Read APIs for what webhooks synced: contacts (with consent and orders),
//! orders, products with variants and inventory, collections.

use axum::extract::{Query, State};
use galantis_store::tenant::catalog::{self, CollectionView, ProductView};
use galantis_store::tenant::contacts::{self, Contact};
use galantis_store::tenant::messaging;
use galantis_store::tenant::orders::{self, Order};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::http::extract::Path;
use crate::http::pagination::{Cursor, Page};
use crate::state::AppState;

fn page_args(cursor: Option<&str>, limit: Option<u32>) -> Result<(Option<Uuid>, u32), AppError> {
    Ok((
        cursor.map(Cursor::decode::<Uuid>).transpose()?,
        limit.unwrap_or(50).clamp(1, 200),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ContactsQuery {
    #[param(value_type = Option<crate::http::openapi::MarketingStateName>)]
    marketing_state: Option<String>,
    tag: Option<String>,
    country: Option<String>,
    q: Option<String>,
    language: Option<String>,
    list_id: Option<Uuid>,
    segment_id: Option<Uuid>,
    cursor: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4294967295.0)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/contacts",
    tag = "contacts",
    summary = "Contacts, filtered",
    params(ContactsQuery),
    responses((status = 200, description = "a page of contacts", body = crate::http::openapi::PageBody))
)]
pub async fn list_contacts(
    State(state): State<AppState>,
    auth: Authed<perm::ContactsRead>,
    Query(q): Query<ContactsQuery>,
) -> Result<axum::Json<Page<Contact>>, AppError> {
    let marketing_state = q
        .marketing_state
        .as_deref()
        .map(str::parse::<galantis_core::MarketingState>)
        .transpose()
        .map_err(|e| AppError::bad_request("invalid_query", e))?;
    let (before, limit) = page_args(q.cursor.as_deref(), q.limit)?;
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    if q.language.is_some() || q.list_id.is_some() || q.segment_id.is_some() {
        // Audience filters (list, segment, language) go through the audience search.
        let rows = crate::http::audience::search_contacts(
            &mut tx,
            crate::http::audience::ContactFilters {
                marketing_state: q.marketing_state,
                tag: q.tag,
                country: q.country,
                q: q.q,
                language: q.language,
                list_id: q.list_id,
                segment_id: q.segment_id,
            },
            before,
            limit + 1,
        )
        .await?;
        tx.commit().await?;
        return Ok(axum::Json(Page::from_rows(rows, limit as usize, |c| c.id)));
    }
    let rows = contacts::list(
        &mut tx,
        &contacts::Filter {
            marketing_state,
            tag: q.tag,
            country: q.country,
            search: q.q,
            before,
            limit: limit + 1,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |c| c.id)))
}

#[utoipa::path(
    get,
    path = "/contacts/{id}",
    tag = "contacts",
    summary = "A contact with its orders, consent and memberships",
    params(("id" = uuid::Uuid, Path, description = "contact id")),
    responses((status = 200, description = "the contact", body = Object))
)]
pub async fn get_contact(
    State(state): State<AppState>,
    auth: Authed<perm::ContactsRead>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Value>, AppError> {
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let contact = contacts::get(&mut tx, id)
        .await?
        .filter(|c| !c.deleted)
        .ok_or(AppError::NotFound("contact"))?;
    let consent = contacts::consent_history(&mut tx, id).await?;
    let orders = orders::list(&mut tx, Some(id), None, 50).await?;
    let conversations = messaging::conversation_of(&mut tx, id).await?;
    let (lists, segments) = crate::http::audience::memberships_of(&mut tx, id).await?;
    let automation_activity =
        crate::http::automations::insight::of_contact(&mut tx, id, 50).await?;
    tx.commit().await?;
    Ok(axum::Json(json!({
        "contact": contact,
        "consent_history": consent,
        "orders": orders,
        "conversations": conversations,
        "lists": lists,
        "segments": segments,
        "automation_activity": automation_activity,
    })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OrdersQuery {
    contact_id: Option<Uuid>,
    cursor: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4294967295.0)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/orders",
    tag = "commerce",
    summary = "Orders",
    params(OrdersQuery),
    responses((status = 200, description = "a page of orders", body = crate::http::openapi::PageBody))
)]
pub async fn list_orders(
    State(state): State<AppState>,
    auth: Authed<perm::OrdersRead>,
    Query(q): Query<OrdersQuery>,
) -> Result<axum::Json<Page<Order>>, AppError> {
    let (before, limit) = page_args(q.cursor.as_deref(), q.limit)?;
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let rows = orders::list(&mut tx, q.contact_id, before, limit + 1).await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |o| o.id)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    cursor: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4294967295.0)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/products",
    tag = "commerce",
    summary = "Products with their variants",
    params(PageQuery),
    responses((status = 200, description = "a page of products", body = crate::http::openapi::PageBody))
)]
pub async fn list_products(
    State(state): State<AppState>,
    auth: Authed<perm::CatalogRead>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Page<ProductView>>, AppError> {
    let (before, limit) = page_args(q.cursor.as_deref(), q.limit)?;
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let rows = catalog::list_products(&mut tx, before, limit + 1).await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |p| p.id)))
}

#[utoipa::path(
    get,
    path = "/collections",
    tag = "commerce",
    summary = "Collections",
    params(PageQuery),
    responses((status = 200, description = "a page of collections", body = crate::http::openapi::PageBody))
)]
pub async fn list_collections(
    State(state): State<AppState>,
    auth: Authed<perm::CatalogRead>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Page<CollectionView>>, AppError> {
    let (before, limit) = page_args(q.cursor.as_deref(), q.limit)?;
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let rows = catalog::list_collections(&mut tx, before, limit + 1).await?;
    tx.commit().await?;
    Ok(axum::Json(Page::from_rows(rows, limit as usize, |c| c.id)))
}
