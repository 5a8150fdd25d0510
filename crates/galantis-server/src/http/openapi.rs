//! `GET /openapi.json`: the API described from the code.
//!
//! Each handler carries its `#[utoipa::path]`; `http::router` registers the
//! routes through `utoipa_axum::routes!`, which takes the method and path from
//! that annotation, so a route cannot be served without being documented
//! (ADR 0015). What every operation shares (the error shape, the bearer
//! scheme) is added here once rather than repeated on ~60 handlers.

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Required, Schema};
use utoipa::{OpenApi as _, ToSchema};

/// The body of every 4xx and 5xx (see `crate::error`).
#[derive(ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case: clients may branch on it.
    pub code: String,
    /// A human sentence; it may change.
    pub message: String,
    /// The `x-request-id` of the response, to quote when reporting.
    pub request_id: String,
}

/// One page of a list: `data`, and `next_cursor` to pass as `cursor` for the
/// next page (absent on the last). Lists are ordered newest first.
#[derive(ToSchema)]
#[schema(as = Page)]
pub struct PageBody {
    #[schema(value_type = Vec<Object>)]
    pub data: (),
    pub next_cursor: Option<String>,
}

// The values a string field takes, where the handler parses it into a core
// enum: documented here so clients (and fuzzers) see the choices.

/// A member's role.
#[derive(ToSchema)]
#[schema(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RoleName {
    Owner,
    Admin,
    MarketingManager,
    CampaignOperator,
    ContentCreator,
    Analyst,
    DataAnalyst,
    SupportAgent,
    Viewer,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum TenantStatusName {
    Active,
    Deactivated,
}

/// A contact's WhatsApp marketing consent.
#[derive(ToSchema)]
#[schema(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MarketingStateName {
    Subscribed,
    Pending,
    NotSubscribed,
    Unsubscribed,
    Unknown,
    Invalid,
    Redacted,
}

/// The consent states a team member may set.
#[derive(ToSchema)]
#[schema(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SettableMarketingState {
    Subscribed,
    Pending,
    NotSubscribed,
    Unsubscribed,
}

/// The consent sources a team member may claim; the others record what the
/// customer did and only the ingress writes them.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ManualConsentSource {
    Api,
    ManualImport,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum JobStateName {
    Available,
    Running,
    Completed,
    Dead,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum WebhookStatus {
    Received,
    Processed,
    Ignored,
    Failed,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum WebhookSource {
    Shopify,
    Meta,
}

const BEARER: &str = "bearer";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Galantis API",
        description = "Shopify stores and the WhatsApp Business Platform. Every `/api/v1` \
            route takes `Authorization: Bearer <token>` (`galantis token create`); errors \
            are `{\"error\":{\"code\",\"message\",\"request_id\"}}`.",
        license(name = "MIT"),
    ),
    // Listed because query parameters refer to them and `IntoParams` does
    // not collect its references.
    components(schemas(
        ErrorBody,
        ErrorDetail,
        PageBody,
        RoleName,
        MarketingStateName,
        SettableMarketingState,
        ManualConsentSource,
        JobStateName,
        WebhookStatus,
        WebhookSource,
        TenantStatusName
    ))
)]
struct ApiDoc;

/// The finished document for `paths` (from the router's `split_for_parts`).
pub fn document(paths: OpenApi) -> OpenApi {
    let mut doc = ApiDoc::openapi().merge_from(paths);
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("an API token (`galantis token create`)"))
                .build(),
        ),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        let authed = path.starts_with("/api/");
        for method in METHODS {
            if let Some(op) = operation_mut(item, method) {
                finish(op, authed);
            }
        }
    }
    doc
}

const METHODS: [HttpMethod; 5] = [
    HttpMethod::Get,
    HttpMethod::Post,
    HttpMethod::Put,
    HttpMethod::Patch,
    HttpMethod::Delete,
];

fn operation_mut(
    item: &mut utoipa::openapi::PathItem,
    method: HttpMethod,
) -> Option<&mut Operation> {
    match method {
        HttpMethod::Get => item.get.as_mut(),
        HttpMethod::Post => item.post.as_mut(),
        HttpMethod::Put => item.put.as_mut(),
        HttpMethod::Patch => item.patch.as_mut(),
        HttpMethod::Delete => item.delete.as_mut(),
        _ => None,
    }
}

/// Adds the error responses and, under `/api/`, the bearer requirement.
fn finish(op: &mut Operation, authed: bool) {
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Error")))
                        .build(),
                )
                .build(),
        )
    };
    optional_bodies_are_absent_not_null(op);
    let responses = &mut op.responses.responses;
    responses
        .entry("4XX".to_owned())
        .or_insert_with(|| error("the request was refused; `code` says why"));
    responses
        .entry("5XX".to_owned())
        .or_insert_with(|| error("a fault of ours, or a dependency down (503)"));
    if authed {
        op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
        responses
            .entry("401".to_owned())
            .or_insert_with(|| error("missing, invalid or revoked token (`unauthenticated`)"));
    }
}

/// `request_body = Option<T>` (a body that may be left out, `OptionalJson`)
/// comes out as "`T` or JSON `null`", but a `null` body is refused: say "`T`,
/// not required" instead.
fn optional_bodies_are_absent_not_null(op: &mut Operation) {
    let Some(body) = op.request_body.as_mut() else {
        return;
    };
    let null = serde_json::json!({"type": "null"});
    for content in body.content.values_mut() {
        let Some(RefOr::T(Schema::OneOf(one))) = &content.schema else {
            continue;
        };
        let mut rest = one
            .items
            .iter()
            .filter(|s| serde_json::to_value(s).ok().as_ref() != Some(&null));
        if let (Some(only), None) = (rest.next(), rest.next())
            && one.items.len() == 2
        {
            content.schema = Some(only.clone());
            body.required = Some(Required::False);
        }
    }
}

/// Serves the document rendered once at start-up: it holds no data, so it
/// needs no token.
pub fn handler(
    doc: &OpenApi,
) -> impl Fn() -> std::future::Ready<Response> + Clone + Send + 'static {
    let body: Arc<str> = Arc::from(
        // Serialising an in-memory document cannot fail.
        doc.to_json().unwrap_or_else(|_| "{}".to_owned()),
    );
    move || {
        let body = body.clone();
        std::future::ready(
            (
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response(),
        )
    }
}
