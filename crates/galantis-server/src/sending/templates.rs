//! Templates at Meta: submitting drafts, syncing statuses (on demand and
//! periodically), deleting. Status webhooks are handled in
//! `webhooks::meta`.

use std::time::Duration;

use galantis_core::templates::{TemplateCategory, TemplateStatus};
use galantis_core::{JobKind, Lane, TenantId};
use galantis_store::control::tenants::{self, TenantStatus};
use galantis_store::tenant::templates::{self as store, SyncedTemplate, TemplateRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::connection;
use crate::error::AppError;
use crate::jobs::{JobContext, JobError};
use crate::state::AppState;

fn meta_failure(e: galantis_core::sending::SendError) -> AppError {
    match e {
        galantis_core::sending::SendError::Meta(m) => AppError::unprocessable(
            "meta_error",
            format!("Meta refused: {} ({})", m.reason(), m.code),
        ),
        other => AppError::unavailable("Meta could not be reached", other),
    }
}

/// Sends a draft to Meta for review: PENDING_APPROVAL (or what Meta says).
pub async fn submit(
    app: &AppState,
    tenant: TenantId,
    t: &TemplateRecord,
) -> Result<TemplateRecord, AppError> {
    let conn = connection::resolve(app, tenant)
        .await
        .map_err(AppError::Internal)?;
    let (Some(base), Some(waba)) = (conn.base_url.clone(), conn.waba_id.clone()) else {
        return Err(AppError::unprocessable(
            "whatsapp_not_connected",
            "connect a WhatsApp account before submitting templates",
        ));
    };
    let mut body = json!({
        "name": t.name,
        "language": t.language,
        "category": t.category,
        "components": t.components,
    });
    if t.parameter_format == "NAMED" {
        body["parameter_format"] = json!("NAMED");
    }
    let answer = app
        .sending
        .api(&base)
        .create_template(&waba, connection::token(&conn), &body)
        .await
        .map_err(meta_failure)?;
    let meta_id = answer["id"].as_str().unwrap_or_default().to_owned();
    let status = answer["status"]
        .as_str()
        .and_then(TemplateStatus::from_meta)
        .unwrap_or(TemplateStatus::PendingApproval);
    let now = app.clock.now().timestamp_millis();
    let mut tx = app.db.tenant_tx(tenant).await?;
    store::mark_submitted(&mut tx, t.id, &meta_id, status.as_str(), now).await?;
    let out = store::get(&mut tx, t.id)
        .await?
        .ok_or(AppError::NotFound("template"))?;
    tx.commit().await?;
    Ok(out)
}

/// What a sync did.
#[derive(Debug, Default, Serialize)]
pub struct SyncReport {
    pub fetched: usize,
    pub created: usize,
    pub changed: usize,
}

/// Reads every template of the tenant's WABA from Meta and stores them.
pub async fn sync(app: &AppState, tenant: TenantId) -> Result<SyncReport, AppError> {
    let conn = connection::resolve(app, tenant)
        .await
        .map_err(AppError::Internal)?;
    let (Some(base), Some(waba)) = (conn.base_url.clone(), conn.waba_id.clone()) else {
        return Err(AppError::unprocessable(
            "whatsapp_not_connected",
            "connect a WhatsApp account before syncing templates",
        ));
    };
    let list = app
        .sending
        .api(&base)
        .list_templates(&waba, connection::token(&conn))
        .await
        .map_err(meta_failure)?;
    let now = app.clock.now().timestamp_millis();
    let mut report = SyncReport {
        fetched: list.len(),
        ..Default::default()
    };
    let mut tx = app.db.tenant_tx(tenant).await?;
    tx.serialize_tenant_writes().await?;
    for t in &list {
        let (Some(name), Some(language)) = (t["name"].as_str(), t["language"].as_str()) else {
            continue;
        };
        let Some(status) = t["status"].as_str().and_then(TemplateStatus::from_meta) else {
            continue;
        };
        let components = t.get("components").cloned().unwrap_or(Value::Array(vec![]));
        let (id, previous) = store::upsert_synced(
            &mut tx,
            &SyncedTemplate {
                meta_template_id: t["id"].as_str().unwrap_or_default(),
                name,
                language,
                // Stored by name so that reading it back always decodes; Meta
                // lists only these three, and absent meant UTILITY already.
                category: t["category"]
                    .as_str()
                    .and_then(|c| c.parse::<TemplateCategory>().ok())
                    .unwrap_or(TemplateCategory::Utility)
                    .as_str(),
                status: status.as_str(),
                rejection_reason: t["rejected_reason"].as_str().filter(|r| *r != "NONE"),
                components: &components,
                parameter_format: t["parameter_format"].as_str().unwrap_or("POSITIONAL"),
            },
            now,
        )
        .await?;
        let prev = previous.as_deref().and_then(TemplateStatus::from_meta);
        match previous {
            None => report.created += 1,
            Some(_) if prev != Some(status) => report.changed += 1,
            _ => continue,
        }
        let e = galantis_core::DomainEvent::TemplateStatusUpdated {
            template_id: id,
            name: name.to_owned(),
            language: language.to_owned(),
            from: prev.map(|p| p.as_str().to_owned()),
            to: status.as_str().to_owned(),
            reason: None,
            source: Some("sync".into()),
        };
        galantis_store::events::record(&mut tx, &e, app.clock.now()).await?;
    }
    tx.commit().await?;
    Ok(report)
}

/// `templates.sync`: one tenant's sync.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncTemplates {
    /// The period slot, so each period gets its own job.
    pub slot: i64,
}

impl JobKind for SyncTemplates {
    const KIND: &'static str = "templates.sync";
    const LANE: Lane = Lane::Sync;
    const MAX_ATTEMPTS: u32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(120);

    fn unique_key(&self) -> Option<String> {
        Some(format!("templates.sync:{}", self.slot))
    }
}

pub async fn run_sync(ctx: JobContext, _job: SyncTemplates) -> Result<(), JobError> {
    let tenant = ctx
        .tenant()
        .ok_or_else(|| JobError::Permanent(anyhow::anyhow!("templates.sync needs a tenant")))?;
    match sync(&ctx.app, tenant).await {
        Ok(r) => {
            tracing::info!(tenant = %tenant, fetched = r.fetched, changed = r.changed, "templates synced");
            Ok(())
        }
        Err(AppError::Unprocessable { message, .. }) => {
            tracing::info!(tenant = %tenant, reason = %message, "templates not synced");
            Ok(())
        }
        Err(e) => Err(JobError::Retry(anyhow::anyhow!("{e}"))),
    }
}

/// `templates.sync_all`: the periodic job; enqueues one `templates.sync`
/// per active tenant with a connected number.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncAllTemplates {
    #[serde(default)]
    pub slot: i64,
}

impl JobKind for SyncAllTemplates {
    const KIND: &'static str = "templates.sync_all";
    const LANE: Lane = Lane::Sync;
    const MAX_ATTEMPTS: u32 = 3;
}

pub async fn run_sync_all(ctx: JobContext, job: SyncAllTemplates) -> Result<(), JobError> {
    let app = &ctx.app;
    for t in tenants::list(&app.db).await? {
        if t.status != TenantStatus::Active {
            continue;
        }
        if galantis_store::control::phone_numbers::list_for_tenant(&app.db, t.id)
            .await?
            .is_empty()
        {
            continue;
        }
        let mut tx = app.db.tenant_tx(t.id).await?;
        crate::jobs::enqueue(&mut tx, &SyncTemplates { slot: job.slot }, ctx.now()).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// The periodic sync, for the scheduler (none when disabled).
pub fn periodic(config: &crate::config::SendingConfig) -> Option<crate::jobs::scheduler::Periodic> {
    (config.template_sync_interval_secs > 0).then(|| crate::jobs::scheduler::Periodic {
        name: SyncAllTemplates::KIND,
        every: Duration::from_secs(config.template_sync_interval_secs),
        make: |at| {
            crate::jobs::new_job(
                &SyncAllTemplates {
                    slot: at.timestamp(),
                },
                at,
            )
            .expect("payload serialises")
        },
    })
}
