//! Reads every column of every tenant table as text, to prove erasure.

use galantis_core::TenantId;
use galantis_testkit::TestApp;

const TABLES: &[&str] = &[
    "contacts",
    "consent_events",
    "orders",
    "checkouts",
    "messages",
    "message_status_events",
    "conversations",
    "webhook_events",
    "domain_events",
    "compliance_requests",
    "tenant_settings",
];

pub async fn tenant_text(app: &TestApp, tenant: TenantId) -> String {
    let mut out = String::new();
    match app.engine() {
        galantis_store::Engine::Sqlite => {
            let path = app
                .scratch
                .dir
                .path()
                .join("data")
                .join("tenants")
                .join(format!("{tenant}.db"));
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            for t in TABLES {
                let cols: Vec<(i64, String, String, i64, Option<String>, i64)> =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!("PRAGMA table_info({t})")))
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                let expr = cols
                    .iter()
                    .map(|c| format!("COALESCE(CASE WHEN typeof({0}) = 'blob' THEN hex({0}) ELSE CAST({0} AS TEXT) END, '')", c.1))
                    .collect::<Vec<_>>()
                    .join(" || '|' || ");
                let rows: Vec<(String,)> =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {expr} FROM {t}")))
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                for (r,) in rows {
                    out.push_str(&r);
                }
            }
            pool.close().await;
        }
        galantis_store::Engine::Postgres => {
            let url = app.scratch.pg.as_ref().unwrap().url.clone();
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            for t in TABLES {
                let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT row_to_json(x)::text FROM \"{}\".{t} x",
                    tenant.schema_name()
                )))
                .fetch_all(&pool)
                .await
                .unwrap();
                for (r,) in rows {
                    out.push_str(&r);
                }
            }
            pool.close().await;
        }
    }
    assert!(out.len() > 10, "dump read something");
    out
}
