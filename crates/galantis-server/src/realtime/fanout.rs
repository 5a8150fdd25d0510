//! Telling every node's hub that a tenant has new events.
//!
//! Publishing (every node that records events, workers included) and
//! listening (nodes that serve the WebSocket) use one channel: Redis pub/sub
//! when `GALANTIS_REDIS_URL` is set, else PostgreSQL NOTIFY (sent inside the
//! recording transaction, so delivered at commit), else nothing beyond the
//! process. The in-process bus always wakes this node's own hub at once.
//! Messages carry `<tenant id>:<seq>` only; the hub reads the rows itself.

use std::time::Duration;

use futures::StreamExt;
use galantis_core::TenantId;
use galantis_store::Db;
use galantis_store::events::EVENTS_CHANNEL;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::hub::Hub;

/// The Redis pub/sub channel.
pub const REDIS_CHANNEL: &str = "galantis:events";

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn tenant_of(payload: &str) -> Option<TenantId> {
    payload.split_once(':')?.0.parse().ok()
}

/// Starts announcing this node's committed events to the other nodes.
pub fn start_publishing(
    db: &Db,
    redis_url: Option<&str>,
    stop: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    match redis_url {
        Some(url) => {
            db.events().set_postgres_notify(false);
            let rx = db.events().sender().subscribe();
            Some(tokio::spawn(publish_to_redis(url.to_owned(), rx, stop)))
        }
        None => {
            db.events().set_postgres_notify(db.pg_pool().is_some());
            None
        }
    }
}

async fn publish_to_redis(
    url: String,
    mut rx: broadcast::Receiver<galantis_store::events::PublishedEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let conn = async {
        let client = redis::Client::open(url.as_str())?;
        redis::aio::ConnectionManager::new(client).await
    };
    let mut conn = match conn.await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "realtime: cannot connect to Redis; events reach only this node's clients");
            return;
        }
    };
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return,
            ev = rx.recv() => match ev {
                Ok(e) => {
                    let msg = format!("{}:{}", e.tenant, e.seq);
                    let r: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                        .arg(REDIS_CHANNEL)
                        .arg(msg)
                        .query_async(&mut conn)
                        .await;
                    if let Err(e) = r {
                        // Other nodes catch up at their next resync.
                        tracing::warn!(error = %e, "realtime: Redis PUBLISH failed");
                    }
                }
                // Lagging loses only wake-ups: the next event or resync covers it.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Starts feeding `hub` from this process's events and from other nodes.
pub fn start_listening(
    hub: Hub,
    db: &Db,
    redis_url: Option<&str>,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![tokio::spawn(listen_local(
        hub.clone(),
        db.events().sender().subscribe(),
        stop.clone(),
    ))];
    if let Some(url) = redis_url {
        tasks.push(tokio::spawn(listen_redis(hub, url.to_owned(), stop)));
    } else if let Some(pool) = db.pg_pool() {
        tasks.push(tokio::spawn(listen_postgres(hub, pool.clone(), stop)));
    }
    tasks
}

async fn listen_local(
    hub: Hub,
    mut rx: broadcast::Receiver<galantis_store::events::PublishedEvent>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return,
            ev = rx.recv() => match ev {
                Ok(e) => hub.notify(e.tenant),
                Err(broadcast::error::RecvError::Lagged(_)) => hub.notify_all(),
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

async fn listen_postgres(hub: Hub, pool: sqlx::PgPool, mut stop: watch::Receiver<bool>) {
    loop {
        let session = async {
            let mut l = sqlx::postgres::PgListener::connect_with(&pool).await?;
            l.listen(EVENTS_CHANNEL).await?;
            // Anything committed while not listening is read now.
            hub.notify_all();
            loop {
                let n = l.recv().await?;
                if let Some(t) = tenant_of(n.payload()) {
                    hub.notify(t);
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            () = stopped(&mut stop) => return,
            r = session => if let Err(e) = r {
                tracing::warn!(error = %e, "realtime: PostgreSQL LISTEN lost; reconnecting");
            },
        }
        tokio::select! {
            () = stopped(&mut stop) => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

async fn listen_redis(hub: Hub, url: String, mut stop: watch::Receiver<bool>) {
    loop {
        let session = async {
            let client = redis::Client::open(url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(REDIS_CHANNEL).await?;
            hub.notify_all();
            let mut messages = pubsub.into_on_message();
            while let Some(msg) = messages.next().await {
                if let Ok(payload) = msg.get_payload::<String>()
                    && let Some(t) = tenant_of(&payload)
                {
                    hub.notify(t);
                }
            }
            Ok::<(), redis::RedisError>(())
        };
        tokio::select! {
            () = stopped(&mut stop) => return,
            r = session => if let Err(e) = r {
                tracing::warn!(error = %e, "realtime: Redis subscription lost; reconnecting");
            },
        }
        tokio::select! {
            () = stopped(&mut stop) => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
