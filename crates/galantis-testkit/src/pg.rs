//! A throwaway PostgreSQL database per test, so tests on PostgreSQL are as
//! isolated as tests on a fresh SQLite directory and can run in parallel.

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

pub struct PgScratch {
    pub url: String,
    pub name: String,
    admin_url: String,
}

impl PgScratch {
    pub async fn create(admin_url: &str) -> Self {
        let name = format!("galantis_t_{}", uuid::Uuid::now_v7().simple());
        let mut conn = admin_options(admin_url).connect().await.expect(
            "TEST_DATABASE_URL is set but PostgreSQL is unreachable (start it, or unset TEST_DATABASE_URL)",
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create scratch database");
        let _ = conn.close().await;
        let url = replace_database(admin_url, &name);
        Self {
            url,
            name,
            admin_url: admin_url.to_owned(),
        }
    }
}

fn admin_options(url: &str) -> PgConnectOptions {
    url.parse::<PgConnectOptions>()
        .expect("TEST_DATABASE_URL must be a postgres:// URL")
        .disable_statement_logging()
}

/// `postgres://u@h:p/db?x` with the database swapped.
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

impl Drop for PgScratch {
    fn drop(&mut self) {
        let admin = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; do the async work on a thread
        // with its own runtime. FORCE ends connections still open in pools.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(mut c) = admin_options(&admin).connect().await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut c)
                        .await;
                    }
                });
            }
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_is_replaced() {
        assert_eq!(
            super::replace_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            super::replace_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(
            super::replace_database("postgres://u@h", "x"),
            "postgres://u@h/x"
        );
    }
}
