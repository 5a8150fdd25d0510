//! Launch, cancel, pause, resume and the test send. Every status change is
//! one conditional update: a second click, or a click racing the
//! dispatcher or the scheduled start, changes nothing and gets 409.

use galantis_core::campaign::{Action, CampaignStatus, transition};
use galantis_core::{MessageSource, PhoneE164};
use galantis_store::tenant::campaigns as store;
use galantis_store::tenant::{contacts, templates};

use super::*;
use crate::campaigns::content;
use crate::campaigns::dispatch::SendCampaignMessagesBatchJob;
use crate::campaigns::launch::{Started, start_in};
use crate::campaigns::monitor::MonitorCampaignJob;
use crate::sending::queue::{Queued, queue_in, refusal_error};

fn conflict(c: CampaignStatus, action: Action) -> AppError {
    let msg = transition(c, action)
        .err()
        .unwrap_or_else(|| format!("the campaign is {c}"));
    AppError::conflict("invalid_campaign_status", msg)
}

#[utoipa::path(
    post,
    path = "/campaigns/{id}/launch",
    tag = "campaigns",
    summary = "Send now: the pre-launch checks, then PENDING and dispatch",
    params(("id" = uuid::Uuid, Path, description = "campaign id")),
    responses(
        (status = 200, description = "launched", body = Object),
        (status = 402, description = "insufficient_credits"),
        (status = 409, description = "not a DRAFT or SCHEDULED campaign"),
        (status = 422, description = "template_not_approved, no_eligible_recipients, template_category_mismatch")
    )
)]
pub async fn launch(
    State(state): State<AppState>,
    auth: Authed<perm::CampaignsSend>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Campaign>, AppError> {
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    let c = load(&mut tx, id).await?;
    let from = [CampaignStatus::Draft, CampaignStatus::Scheduled];
    match start_in(&mut tx, &c, &from, state.clock.now()).await? {
        Started::Launched => {}
        Started::Refused(r) => {
            return Err(if r.is_payment() {
                AppError::PaymentRequired {
                    code: r.code(),
                    message: r.to_string(),
                }
            } else {
                AppError::unprocessable(r.code(), r.to_string())
            });
        }
        Started::NotLaunchable(s) => return Err(conflict(s, Action::Launch)),
    }
    let c = load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(axum::Json(c))
}

async fn change(
    state: &AppState,
    auth: &galantis_store::control::tokens::Principal,
    id: Uuid,
    action: Action,
    from: &[CampaignStatus],
    to: CampaignStatus,
) -> Result<Campaign, AppError> {
    let now = state.clock.now();
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    let c = load(&mut tx, id).await?;
    let reason = (to == CampaignStatus::Cancelled).then_some("cancelled_by_member");
    if !store::transition(&mut tx, id, from, to, reason, now.timestamp_millis()).await? {
        return Err(conflict(c.status, action));
    }
    if to == CampaignStatus::Cancelled {
        // Messages queued but not yet sent do not go out after a cancel.
        store::recipients::withdraw_unsent(&mut tx, id, now.timestamp_millis()).await?;
    }
    if action == Action::Resume {
        crate::jobs::enqueue(
            &mut tx,
            &SendCampaignMessagesBatchJob { campaign_id: id },
            now,
        )
        .await?;
        crate::jobs::enqueue(&mut tx, &MonitorCampaignJob { campaign_id: id }, now).await?;
    }
    let c = load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(c)
}

#[utoipa::path(
    post,
    path = "/campaigns/{id}/cancel",
    tag = "campaigns",
    summary = "Cancel: dispatch stops, queued messages not yet sent are withdrawn (recipients SKIPPED with campaign_cancelled); what was sent stays sent",
    params(("id" = uuid::Uuid, Path, description = "campaign id")),
    responses((status = 200, description = "cancelled", body = Object), (status = 409, description = "already final"))
)]
pub async fn cancel(
    State(state): State<AppState>,
    auth: Authed<perm::CampaignsSend>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Campaign>, AppError> {
    use CampaignStatus::*;
    let from = [Draft, Scheduled, Pending, Paused];
    Ok(axum::Json(
        change(&state, &auth, id, Action::Cancel, &from, Cancelled).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/campaigns/{id}/pause",
    tag = "campaigns",
    summary = "Pause dispatch",
    params(("id" = uuid::Uuid, Path, description = "campaign id")),
    responses((status = 200, description = "paused", body = Object), (status = 409, description = "not PENDING"))
)]
pub async fn pause(
    State(state): State<AppState>,
    auth: Authed<perm::CampaignsSend>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Campaign>, AppError> {
    use CampaignStatus::*;
    Ok(axum::Json(
        change(&state, &auth, id, Action::Pause, &[Pending], Paused).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/campaigns/{id}/resume",
    tag = "campaigns",
    summary = "Resume a paused campaign",
    params(("id" = uuid::Uuid, Path, description = "campaign id")),
    responses((status = 200, description = "resumed", body = Object), (status = 409, description = "not PAUSED"))
)]
pub async fn resume(
    State(state): State<AppState>,
    auth: Authed<perm::CampaignsSend>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Campaign>, AppError> {
    use CampaignStatus::*;
    Ok(axum::Json(
        change(&state, &auth, id, Action::Resume, &[Paused], Pending).await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestSend {
    /// E.164 phone of an existing contact (e.g. a team member's own).
    phone: String,
}

#[utoipa::path(
    post,
    path = "/campaigns/{id}/test-send",
    tag = "campaigns",
    summary = "Send the campaign's message to one contact's number, through the send path",
    params(("id" = uuid::Uuid, Path, description = "campaign id")),
    request_body = TestSend,
    responses((status = 202, description = "queued", body = Object))
)]
pub async fn test_send(
    State(state): State<AppState>,
    auth: Authed<perm::CampaignsSend>,
    Path(id): Path<Uuid>,
    Json(body): Json<TestSend>,
) -> Result<Response, AppError> {
    let phone = PhoneE164::parse(&body.phone).map_err(|e| invalid(format!("phone: {e}")))?;
    let conn = crate::sending::connection::resolve(&state, auth.tenant_id)
        .await
        .map_err(AppError::Internal)?;
    let now = state.clock.now();
    let mut tx = state.db.tenant_tx(auth.tenant_id).await?;
    let c = load(&mut tx, id).await?;
    let contact = contacts::by_phone(&mut tx, phone.as_str())
        .await?
        .ok_or(AppError::NotFound("contact with this phone"))?;
    let template = templates::get(&mut tx, c.template_id)
        .await?
        .ok_or(AppError::NotFound("template"))?;
    let components = content::components(&c.variables_mapping, &contact).map_err(|v| {
        AppError::unprocessable(
            "missing_variable",
            format!("variable {v} has no value for this contact and no fallback"),
        )
    })?;
    let send = content::outgoing(
        &template,
        components,
        contact.id,
        c.phone_number_id.clone(),
        format!("campaign-test:{}:{}", c.id, uuid::Uuid::now_v7()),
        MessageSource::Api,
    );
    let q: Queued = match queue_in(&mut tx, &conn, now, &send).await? {
        Ok(q) => q,
        Err(r) => return Err(refusal_error(&r)),
    };
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, axum::Json(q.message)).into_response())
}
