//! The campaign reach estimate over include/exclude lists and segments.

use super::*;

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SetKind {
    List,
    Segment,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRef {
    #[serde(rename = "type")]
    kind: SetKind,
    id: Uuid,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EstimateBody {
    #[serde(default)]
    include: Vec<SetRef>,
    #[serde(default)]
    exclude: Vec<SetRef>,
}

/// Splits include/exclude references into an [`AudienceSpec`].
pub fn audience_spec(include: &[SetRef], exclude: &[SetRef]) -> AudienceSpec {
    let pick = |refs: &[SetRef], k: SetKind| -> Vec<Uuid> {
        let mut v: Vec<Uuid> = refs.iter().filter(|r| r.kind == k).map(|r| r.id).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    AudienceSpec {
        include_lists: pick(include, SetKind::List),
        include_segments: pick(include, SetKind::Segment),
        exclude_lists: pick(exclude, SetKind::List),
        exclude_segments: pick(exclude, SetKind::Segment),
    }
}

/// `POST /audiences/estimate`: included, excluded, duplicates, not
/// subscribed and final reach of an audience of lists and segments.
#[utoipa::path(
    post,
    path = "/audiences/estimate",
    tag = "audience",
    summary = "Count an audience of lists and segments (include minus exclude)",
    request_body = EstimateBody,
    responses((status = 200, description = "the estimate", body = Object))
)]
pub async fn estimate(
    State(state): State<AppState>,
    auth: Authed<perm::AudienceRead>,
    Json(body): Json<EstimateBody>,
) -> Result<axum::Json<Estimate>, AppError> {
    if body.include.is_empty() {
        return Err(AppError::unprocessable(
            "invalid_field",
            "include: at least one list or segment",
        ));
    }
    if body.include.len() + body.exclude.len() > 100 {
        return Err(AppError::unprocessable(
            "invalid_field",
            "at most 100 lists and segments",
        ));
    }
    let spec = audience_spec(&body.include, &body.exclude);
    let mut tx = state.db.tenant_read(auth.tenant_id).await?;
    let lists_named: Vec<Uuid> = spec
        .include_lists
        .iter()
        .chain(&spec.exclude_lists)
        .copied()
        .collect();
    let segments_named: Vec<Uuid> = spec
        .include_segments
        .iter()
        .chain(&spec.exclude_segments)
        .copied()
        .collect();
    if let Some(missing) = store::missing_ids(&mut tx, &lists_named, &segments_named)
        .await?
        .first()
    {
        return Err(AppError::NotFoundCode {
            code: "not_found",
            message: format!("list or segment {missing} not found"),
        });
    }
    let e = store::estimate(&mut tx, &spec).await?;
    tx.commit().await?;
    Ok(axum::Json(e))
}
