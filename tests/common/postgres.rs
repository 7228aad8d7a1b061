//! Throwaway PostgreSQL databases for tests, on the server named by
//! `CHATSTREAM_TEST_POSTGRES` (an admin URL; default
//! `postgres://postgres@127.0.0.1:5432/postgres`). `.ci/run` makes sure one
//! answers there; a test that cannot reach it fails and says so.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Databases made by this module start with this.
const PREFIX: &str = "chatstream_test_";
/// A test database older than this is left over from a failed run: dropped.
const STALE_AFTER_SECS: u64 = 6 * 3600;

/// The admin URL from `CHATSTREAM_TEST_POSTGRES`, or the default.
pub fn admin_url() -> String {
    std::env::var("CHATSTREAM_TEST_POSTGRES")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_string())
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{database}?{query}"),
        None => format!("{root}/{database}"),
    }
}

async fn admin_connection() -> PgConnection {
    let url = admin_url();
    match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(&url)).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => panic!(
            "PostgreSQL is needed by this test and cannot be reached at {url} \
             (set CHATSTREAM_TEST_POSTGRES to an admin URL, or run .ci/run): {error}"
        ),
        Err(_) => panic!(
            "PostgreSQL is needed by this test and did not answer within 10 s at {url} \
             (set CHATSTREAM_TEST_POSTGRES to an admin URL, or run .ci/run)"
        ),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Creates an empty database `chatstream_test_<time>_<random>` and returns
/// its URL. Drops test databases left over from runs older than six hours.
pub async fn fresh_database_url() -> String {
    let mut admin = admin_connection().await;
    drop_stale_databases(&mut admin).await;
    let name = format!("{PREFIX}{}_{}", now_secs(), Uuid::new_v4().simple());
    admin
        .execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
    admin.close().await.ok();
    with_database(&admin_url(), &name)
}

/// Drops the database of a URL from [`fresh_database_url`], closing whatever
/// connections it still has.
pub async fn drop_database(url: &str) {
    let Some(name) = database_name(url) else {
        return;
    };
    if !name.starts_with(PREFIX) {
        return;
    }
    let mut admin = admin_connection().await;
    let _ = admin
        .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
        .await;
    admin.close().await.ok();
}

/// The database name in a PostgreSQL URL.
pub fn database_name(url: &str) -> Option<String> {
    let base = url.split('?').next()?;
    let authority_start = base.find("://")? + 3;
    let slash = base[authority_start..].find('/')?;
    Some(base[authority_start + slash + 1..].to_string())
}

async fn drop_stale_databases(admin: &mut PgConnection) {
    let names: Vec<(String,)> =
        match sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(format!("{PREFIX}%"))
            .fetch_all(&mut *admin)
            .await
        {
            Ok(names) => names,
            Err(_) => return,
        };
    let now = now_secs();
    for (name,) in names {
        let created = name[PREFIX.len()..]
            .split('_')
            .next()
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|created| now.saturating_sub(created) > STALE_AFTER_SECS) {
            let _ = admin
                .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                .await;
        }
    }
}
