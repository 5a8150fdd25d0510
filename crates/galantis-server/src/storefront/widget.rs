//! `GET /storefront/back-in-stock.js`: the widget script, with the shop's
//! appearance settings inlined (Shopify appends `?shop=…` to script tags).

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use galantis_core::ShopDomain;
use galantis_core::back_in_stock::WidgetSettings;
use galantis_store::tenant::{back_in_stock as bis, settings};
use serde::Deserialize;

use crate::state::AppState;
use crate::webhooks::ingress::tenant_of_shop;

const WIDGET: &str = include_str!("widget.js");

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WidgetQuery {
    /// The shop (`*.myshopify.com`); its settings are inlined. Without it
    /// (or for an unknown shop) the defaults are.
    shop: Option<String>,
}

async fn settings_of(state: &AppState, shop: Option<&str>) -> WidgetSettings {
    let Some(shop) = shop.and_then(|s| ShopDomain::parse(s).ok()) else {
        return WidgetSettings::default();
    };
    let Ok(tenant) = tenant_of_shop(state, &shop).await else {
        return WidgetSettings::default();
    };
    let stored = async {
        let mut tx = state.db.tenant_read(tenant).await?;
        let v = settings::get(&mut tx, bis::SETTINGS_KEY).await?;
        tx.commit().await?;
        Ok::<_, galantis_store::StoreError>(v)
    }
    .await;
    match stored {
        Ok(v) => WidgetSettings::from_stored(v.as_ref()),
        Err(e) => {
            tracing::warn!(error = %e, "widget settings unavailable; serving defaults");
            WidgetSettings::default()
        }
    }
}

/// The script with `settings` inlined (as JSON, `<` escaped so nothing can
/// close a surrounding tag).
pub fn render(settings: &WidgetSettings) -> String {
    let json = serde_json::to_string(settings)
        .expect("settings serialize")
        .replace('<', "\\u003c");
    WIDGET.replace("__GALANTIS_SETTINGS__", &json)
}

#[utoipa::path(
    get,
    path = "/storefront/back-in-stock.js",
    tag = "storefront",
    summary = "The back-in-stock widget script (dependency-free; stable URL)",
    params(WidgetQuery),
    responses((status = 200, description = "JavaScript", body = String, content_type = "application/javascript"))
)]
pub async fn script(State(state): State<AppState>, Query(q): Query<WidgetQuery>) -> Response {
    let settings = settings_of(&state, q.shop.as_deref()).await;
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            // Settings changes show within five minutes; the URL never changes.
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        render(&settings),
    )
        .into_response()
}
