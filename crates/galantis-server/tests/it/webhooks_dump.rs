//! Reads every column of every tenant table as text, to prove erasure. The
//! tables come from the schema itself, so a new table is checked as soon as
//! a migration adds it.

use galantis_core::TenantId;
use galantis_testkit::TestApp;

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
            let tables: Vec<(String,)> = sqlx::query_as(
                "SELECT name FROM sqlite_master WHERE type = 'table'
                 AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            assert_tables(&tables);
            for (t,) in &tables {
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
            let tables: Vec<(String,)> = sqlx::query_as(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_schema = $1 AND table_type = 'BASE TABLE'
                   AND table_name <> '_sqlx_migrations' ORDER BY table_name",
            )
            .bind(tenant.schema_name())
            .fetch_all(&pool)
            .await
            .unwrap();
            assert_tables(&tables);
            for (t,) in &tables {
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

/// The schema query found the tables it must (a wrong query would find
/// none and prove nothing).
fn assert_tables(tables: &[(String,)]) {
    let names: Vec<&str> = tables.iter().map(|(t,)| t.as_str()).collect();
    for must in ["contacts", "messages", "webhook_events", "domain_events"] {
        assert!(names.contains(&must), "{must} missing from {names:?}");
    }
}
