//! The inbox: conversations (`read`), their status, assignment and read
//! state (`manage`), replies and internal notes (`reply`), quick replies
//! and inbox analytics.

pub mod analytics;
pub mod manage;
pub mod quick_replies;
pub mod read;
pub mod reply;

use galantis_core::DomainEvent;
use galantis_store::TenantTx;
use galantis_store::tenant::conversations::{self as store, Conversation};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::AppError;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(read::list))
        .routes(routes!(read::get, manage::update))
        .routes(routes!(manage::mark_read))
        .routes(routes!(reply::post))
        .routes(routes!(quick_replies::list, quick_replies::create))
        .routes(routes!(quick_replies::delete))
        .routes(routes!(analytics::get))
}

/// The conversation, or 404 (also for another tenant's id).
pub(crate) async fn load(tx: &mut TenantTx, id: Uuid) -> Result<Conversation, AppError> {
    store::get(tx, id)
        .await?
        .ok_or(AppError::NotFound("conversation"))
}

/// Records `conversation.updated` with the conversation as it now is, in
/// the transaction of the change.
pub(crate) async fn record_updated(
    state: &AppState,
    tx: &mut TenantTx,
    id: Uuid,
    change: &str,
    member: Option<Uuid>,
) -> Result<Conversation, AppError> {
    let now = load(tx, id).await?;
    galantis_store::events::record(
        tx,
        &DomainEvent::ConversationUpdated {
            conversation_id: now.id,
            contact_id: now.contact_id,
            status: now.status.clone(),
            assignee_id: now.assignee_id,
            unread_count: now.unread_count,
            change: change.to_owned(),
            member_id: member,
        },
        state.clock.now(),
    )
    .await?;
    Ok(now)
}
