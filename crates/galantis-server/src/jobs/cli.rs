//! `galantis jobs …`: the queue's operator view across all tenants.

use anyhow::Context;
use clap::Subcommand;
use galantis_core::{JobId, JobState};
use galantis_store::jobs::admin::{self, RetryError};
use serde_json::json;

use super::kinds::probe::QueueProbe;
use crate::cli::common::{parse_shop, print, tenant_by_shop};
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// Per-lane counts over every tenant (queued, scheduled, running, dead, oldest age).
    Stats,
    /// Dead jobs, newest first (one tenant's with --shop, else global jobs and every tenant's).
    Dead {
        /// Only this tenant's dead jobs (its Shopify domain).
        #[arg(long)]
        shop: Option<String>,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Puts a dead job back in the queue.
    Retry {
        /// The job's id, as listed by `jobs dead`.
        #[arg(long)]
        id: String,
        /// The job's tenant (omit for global jobs).
        #[arg(long)]
        shop: Option<String>,
    },
    /// Enqueues probe jobs for a tenant: each counts its own runs, so
    /// `probe-report` shows whether any ran twice.
    Probe {
        /// The tenant whose queue is probed (its Shopify domain).
        #[arg(long)]
        shop: String,
        /// How many probe jobs to enqueue.
        #[arg(long, default_value_t = 100)]
        count: u32,
        /// How long each probe job sleeps while it runs.
        #[arg(long, default_value_t = 0)]
        sleep_ms: u64,
    },
    /// How many probe jobs ran, and whether any ran more than once.
    ProbeReport {
        /// The tenant that was probed (its Shopify domain).
        #[arg(long)]
        shop: String,
    },
}

pub async fn run(config: &Config, cmd: JobsCommand) -> anyhow::Result<()> {
    let (db, _, _) = crate::app::open(config).await?;
    let now = db.now();
    match cmd {
        JobsCommand::Stats => {
            print(json!({ "lanes": admin::stats(&db, None, now).await? }));
        }
        JobsCommand::Dead { shop, limit } => {
            let limit = limit.clamp(1, 1000);
            let mut out = Vec::new();
            let scopes = match shop {
                Some(s) => vec![Some(tenant_by_shop(&db, &parse_shop(&s)?).await?.id)],
                None => {
                    let mut v = vec![None];
                    v.extend(
                        galantis_store::control::tenants::list(&db)
                            .await?
                            .into_iter()
                            .map(|t| Some(t.id)),
                    );
                    v
                }
            };
            for tenant in scopes {
                out.extend(admin::list(&db, tenant, Some(JobState::Dead), None, limit).await?);
            }
            out.sort_by_key(|j| std::cmp::Reverse(j.id));
            out.truncate(limit as usize);
            print(serde_json::to_value(out)?);
        }
        JobsCommand::Retry { id, shop } => {
            let id: JobId = id.parse()?;
            let tenant = match shop {
                Some(s) => Some(tenant_by_shop(&db, &parse_shop(&s)?).await?.id),
                None => None,
            };
            match admin::retry_dead(&db, tenant, id, now).await {
                Ok(job) => print(serde_json::to_value(job)?),
                Err(RetryError::NotFound) => {
                    anyhow::bail!("no job {id} (give --shop for a tenant's job)")
                }
                Err(RetryError::NotRetryable(s)) => {
                    anyhow::bail!("only dead jobs can be retried; job {id} is {s}")
                }
                Err(RetryError::Store(e)) => return Err(e.into()),
            }
        }
        JobsCommand::Probe {
            shop,
            count,
            sleep_ms,
        } => {
            let tenant = tenant_by_shop(&db, &parse_shop(&shop)?).await?;
            let mut created = 0u32;
            while created < count {
                let batch = (count - created).min(500);
                let mut tx = db.tenant_tx(tenant.id).await?;
                for _ in 0..batch {
                    super::enqueue(&mut tx, &QueueProbe { sleep_ms }, now).await?;
                }
                tx.commit().await?;
                created += batch;
            }
            print(json!({ "enqueued": created, "shop": tenant.shop }));
        }
        JobsCommand::ProbeReport { shop } => {
            let tenant = tenant_by_shop(&db, &parse_shop(&shop)?).await?;
            let mut tx = db.tenant_read(tenant.id).await?;
            let summary = galantis_store::tenant::probes::summary(&mut tx)
                .await
                .context("reading probes")?;
            tx.commit().await?;
            print(serde_json::to_value(summary)?);
        }
    }
    db.close().await;
    Ok(())
}
