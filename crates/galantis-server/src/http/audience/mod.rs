//! The audience API: lists (CRUD, members by id or search, CSV imports with
//! progress and a row report), segments (CRUD, members, preview of unsaved
//! rules, refresh) and the campaign reach estimate.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use galantis_core::MarketingState;
use galantis_core::audience::{CsvHeader, CsvSplitter, RawRecord, RowValidator};
use galantis_core::segment::SegmentRules;
use galantis_store::tenant::audience::{self as store, AudienceSpec, Estimate};
use galantis_store::tenant::contacts::{self, Contact, ContactSearch};
use galantis_store::tenant::csv_imports::{self, Import, Reject};
use galantis_store::tenant::lists::{self, List};
use galantis_store::tenant::segments::{self, Segment};
use galantis_store::{StoreError, TenantTx};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::audience;
use crate::error::AppError;
use crate::http::auth::{Authed, perm};
use crate::http::extract::{Json, Path};
use crate::http::pagination::{Cursor, Page};
use crate::jobs::kinds::audience::CsvImport;
use crate::state::AppState;

/// Valid rows staged per batch (and applied per transaction by the job).
pub const IMPORT_BATCH_ROWS: usize = 500;
const MAX_CONTACT_IDS: usize = 10_000;

fn page_args(cursor: Option<&str>, limit: Option<u32>) -> Result<(Option<Uuid>, u32), AppError> {
    Ok((
        cursor.map(Cursor::decode::<Uuid>).transpose()?,
        limit.unwrap_or(50).clamp(1, 200),
    ))
}

fn now_ms(state: &AppState) -> i64 {
    state.clock.now().timestamp_millis()
}

fn conflict(e: StoreError) -> AppError {
    match e {
        StoreError::Conflict("list_name_taken") => {
            AppError::conflict("list_name_taken", "a list with this name already exists")
        }
        StoreError::Conflict("segment_name_taken") => AppError::conflict(
            "segment_name_taken",
            "a segment with this name already exists",
        ),
        StoreError::Conflict("list_in_use") => AppError::conflict(
            "list_in_use",
            "a segment's rules refer to this list; change those rules first",
        ),
        other => other.into(),
    }
}

/// Longest list or segment name, and description.
const MAX_NAME_CHARS: usize = 120;
const MAX_DESCRIPTION_CHARS: usize = 1000;

/// 422 naming the field: names are shown in dashboards and exports, where
/// a control or bidi-override character would hide or reorder what is
/// around it.
fn invalid_field(e: galantis_core::text::FieldError) -> AppError {
    AppError::unprocessable("invalid_field", e.to_string())
}

fn valid_name(name: &str) -> Result<&str, AppError> {
    galantis_core::text::check_field("name", name, MAX_NAME_CHARS).map_err(invalid_field)
}

fn valid_description(d: Option<&str>) -> Result<Option<&str>, AppError> {
    let Some(d) = d else { return Ok(None) };
    let d = galantis_core::text::check_multiline("description", d, MAX_DESCRIPTION_CHARS)
        .map_err(invalid_field)?;
    Ok(Some(d).filter(|d| !d.is_empty()))
}

/// `description` in a PATCH: absent keeps, `null` clears, text sets.
fn description_change(v: &Option<Value>) -> Result<Option<Option<&str>>, AppError> {
    match v {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(valid_description(Some(s))?)),
        Some(_) => Err(AppError::unprocessable(
            "invalid_field",
            "description: expected text or null",
        )),
    }
}

fn parse_rules(v: &Value) -> Result<SegmentRules, AppError> {
    SegmentRules::parse(v)
        .map_err(|e| AppError::unprocessable("invalid_segment_rules", e.to_string()))
}

/// `?cursor=&limit=` of the audience lists.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub(super) cursor: Option<String>,
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4294967295.0)]
    pub(super) limit: Option<u32>,
}

mod csv_import;
mod estimate;
mod list;
mod segment;

pub use csv_import::*;
pub use estimate::*;
pub use list::*;
pub use segment::*;
