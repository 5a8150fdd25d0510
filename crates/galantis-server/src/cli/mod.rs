//! The `galantis` command line. Commands print JSON on stdout (one object or
//! array) and log to stderr; failures print one `error: …` line and exit 1.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use galantis_core::{Email, MemberId, Role, TokenId};
use galantis_store::control::tenants::{self, NewTenant, PhoneNumberLink};
use galantis_store::control::{keyring, members, tokens};
use galantis_store::crypto::MasterKey;
use galantis_store::{StoreError, migrate};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::app::{self, KeySource};
use crate::config::Config;
use crate::http::ServeRole;

pub(crate) mod common;

use common::{parse_shop, print, store_err, tenant_by_shop};

#[derive(Parser, Debug)]
#[command(
    name = "galantis",
    version,
    about = "Shopify × WhatsApp Business Platform, multi-tenant"
)]
pub struct Cli {
    /// Configuration file (default: ./galantis.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP API, webhooks, job workers and scheduler.
    Serve(ServeArgs),
    /// Apply control and tenant migrations (safe to re-run).
    Migrate,
    /// Create, list and deactivate tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage team members.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Issue and revoke API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Master key operations.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Credits: operator grants (tenants buy credits through Shopify).
    #[command(subcommand)]
    Billing(BillingCommand),
    /// The job queue's operator view.
    #[command(subcommand)]
    Jobs(crate::jobs::cli::JobsCommand),
    /// Benchmarks (see docs/performance.md).
    Bench(crate::bench::BenchArgs),
    /// Simulators of external platforms (the Meta Cloud API sandbox).
    #[command(subcommand)]
    Sandbox(crate::sandbox::cli::SandboxCommand),
    /// Sign and post webhooks to a running server, like the platforms do.
    #[command(subcommand)]
    Simulate(crate::webhooks::simulate::SimulateCommand),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// What this node runs (several nodes can share one database).
    #[arg(long, value_enum, default_value = "all")]
    pub role: ServeRole,
    /// Listen address (overrides GALANTIS_BIND).
    #[arg(long)]
    pub bind: Option<std::net::SocketAddr>,
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Create a tenant and its OWNER; prints the owner's token once.
    Create {
        /// The tenant's Shopify domain, e.g. acme.myshopify.com.
        #[arg(long)]
        shop: String,
        /// The OWNER's email address (optional).
        #[arg(long)]
        owner_email: Option<String>,
        /// Meta's id of the tenant's WhatsApp number (digits), linked at
        /// creation. With the Meta sandbox's development number
        /// (100000000000001, WABA 200000000000001) and no Meta token stored,
        /// the tenant sends to the mounted sandbox.
        #[arg(long, requires = "waba_id")]
        phone_number_id: Option<String>,
        /// Meta's id of the WhatsApp Business Account owning that number
        /// (digits).
        #[arg(long, requires = "phone_number_id")]
        waba_id: Option<String>,
    },
    /// List tenants.
    List,
    /// Deactivate a tenant: its tokens stop working; data is kept.
    Deactivate {
        /// The tenant's Shopify domain, e.g. acme.myshopify.com.
        #[arg(long)]
        shop: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Add a team member with a role.
    Add {
        /// The tenant's Shopify domain, e.g. acme.myshopify.com.
        #[arg(long)]
        shop: String,
        /// The member's email address (one member per address and tenant).
        #[arg(long)]
        email: String,
        /// One of ADMIN, MARKETING_MANAGER, CAMPAIGN_OPERATOR,
        /// CONTENT_CREATOR, ANALYST, DATA_ANALYST, SUPPORT_AGENT, VIEWER (the
        /// OWNER is created with the tenant).
        #[arg(long)]
        role: String,
    },
    /// List a tenant's members.
    List {
        /// The tenant's Shopify domain, e.g. acme.myshopify.com.
        #[arg(long)]
        shop: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Issue a token for a member (id or email); printed once.
    Create {
        /// The tenant's Shopify domain, e.g. acme.myshopify.com.
        #[arg(long)]
        shop: String,
        /// The member's id or email address.
        #[arg(long)]
        member: String,
        /// A note to tell the token apart later (e.g. "zapier").
        #[arg(long)]
        label: Option<String>,
    },
    /// Revoke a token by id.
    Revoke {
        /// The tenant's Shopify domain, e.g. acme.myshopify.com.
        #[arg(long)]
        shop: String,
        /// The token's id (`token_id` as printed by `token create`).
        #[arg(long = "token-id")]
        token_id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum BillingCommand {
    /// Add credits to a tenant, with the reason recorded in its ledger
    /// (`operator_grant`); prints the ledger entry.
    Grant {
        /// The tenant's Shopify domain, e.g. acme.myshopify.com.
        #[arg(long)]
        shop: String,
        /// How many credits to add (1 to 1,000,000).
        #[arg(long, allow_negative_numbers = true)]
        credits: i64,
        /// Why, recorded in the ledger entry (one line, at most 500
        /// characters).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Re-wrap every tenant's data key under a new master key. The new key is
    /// GALANTIS_NEW_MASTER_KEY when set, otherwise generated. In embedded mode
    /// the key file is replaced; otherwise the new key is printed once and
    /// must be set as GALANTIS_MASTER_KEY.
    Rotate,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = Config::load(cli.config.as_deref())?;
    crate::telemetry::init_tracing(config.log_format);
    app::restrict_umask();
    match cli.command {
        Command::Serve(args) => {
            if let Some(bind) = args.bind {
                config.bind = bind;
            }
            let bind = config.bind;
            let state = app::build_state(config).await?;
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .with_context(|| format!("cannot listen on {bind}"))?;
            tracing::info!(addr = %listener.local_addr()?, role = ?args.role, engine = state.db.engine().as_str(), "galantis listening");
            let workers = (args.role != ServeRole::Api).then(crate::jobs::Registry::builtin);
            app::serve(state, listener, args.role, workers, app::shutdown_signal()).await
        }
        Command::Migrate => {
            let (db, _, _) = app::open(&config).await?;
            let report = migrate::migrate_all(&db, 100, 4).await?;
            print(serde_json::to_value(report)?);
            Ok(())
        }
        Command::Tenant(cmd) => tenant_command(&config, cmd).await,
        Command::Member(cmd) => member_command(&config, cmd).await,
        Command::Token(cmd) => token_command(&config, cmd).await,
        Command::Keys(KeysCommand::Rotate) => rotate_keys(&config).await,
        Command::Billing(BillingCommand::Grant {
            shop,
            credits,
            reason,
        }) => {
            let shop = parse_shop(&shop)?;
            // Refused before opening anything: bad input writes nothing.
            crate::billing::operator_grant_input(credits, &reason)?;
            let (db, _, _) = app::open(&config).await?;
            let tenant = tenant_by_shop(&db, &shop).await?;
            let entry =
                crate::billing::operator_grant(&db, tenant.id, credits, &reason, db.now()).await?;
            print(json!({ "shop": shop, "tenant_id": tenant.id, "entry": entry }));
            db.close().await;
            Ok(())
        }
        Command::Jobs(cmd) => crate::jobs::cli::run(&config, cmd).await,
        Command::Bench(cmd) => crate::bench::run(&config, cmd).await,
        Command::Sandbox(cmd) => crate::sandbox::cli::run(&config, cmd).await,
        Command::Simulate(cmd) => crate::webhooks::simulate::run(&config, cmd).await,
    }
}

async fn tenant_command(config: &Config, cmd: TenantCommand) -> anyhow::Result<()> {
    match cmd {
        TenantCommand::Create {
            shop,
            owner_email,
            phone_number_id,
            waba_id,
        } => {
            let shop = parse_shop(&shop)?;
            let owner_email = owner_email.as_deref().map(Email::parse).transpose()?;
            let phone = phone_number_id
                .zip(waba_id)
                .map(|(phone_number_id, waba_id)| PhoneNumberLink {
                    phone_number_id,
                    waba_id,
                });
            if let Some(p) = &phone {
                for (name, v) in [
                    ("--phone-number-id", &p.phone_number_id),
                    ("--waba-id", &p.waba_id),
                ] {
                    if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_digit()) {
                        bail!("{name} must be Meta's numeric id");
                    }
                }
            }
            let (db, master, _) = app::open(config).await?;
            let created = tenants::create(
                &db,
                &master,
                NewTenant {
                    shop,
                    owner_email,
                    phone: phone.clone(),
                },
            )
            .await
            .map_err(store_err)?;
            print(json!({
                "tenant_id": created.tenant.id,
                "shop": created.tenant.shop,
                "status": created.tenant.status,
                "owner_member_id": created.owner.id,
                "token": created.token.secret.expose_secret(),
                "phone_number_id": phone.as_ref().map(|p| &p.phone_number_id),
                "waba_id": phone.as_ref().map(|p| &p.waba_id),
            }));
            Ok(())
        }
        TenantCommand::List => {
            let (db, _, _) = app::open(config).await?;
            print(serde_json::to_value(tenants::list(&db).await?)?);
            Ok(())
        }
        TenantCommand::Deactivate { shop } => {
            let shop = parse_shop(&shop)?;
            let (db, _, _) = app::open(config).await?;
            let t = tenants::deactivate(&db, &shop).await.map_err(|e| match e {
                StoreError::NotFound => anyhow::anyhow!("no tenant for shop {shop}"),
                other => other.into(),
            })?;
            print(serde_json::to_value(t)?);
            Ok(())
        }
    }
}

async fn member_command(config: &Config, cmd: MemberCommand) -> anyhow::Result<()> {
    match cmd {
        MemberCommand::Add { shop, email, role } => {
            let shop = parse_shop(&shop)?;
            let email = Email::parse(&email)?;
            let role: Role = role.parse()?;
            if role == Role::Owner {
                bail!(
                    "a tenant has exactly one OWNER, created with the tenant; choose another role"
                );
            }
            let (db, _, _) = app::open(config).await?;
            let tenant = tenant_by_shop(&db, &shop).await?;
            let m = members::add(&db, tenant.id, email, role)
                .await
                .map_err(store_err)?;
            print(serde_json::to_value(m)?);
            Ok(())
        }
        MemberCommand::List { shop } => {
            let shop = parse_shop(&shop)?;
            let (db, _, _) = app::open(config).await?;
            let tenant = tenant_by_shop(&db, &shop).await?;
            print(serde_json::to_value(members::list(&db, tenant.id).await?)?);
            Ok(())
        }
    }
}

async fn token_command(config: &Config, cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            shop,
            member,
            label,
        } => {
            let shop = parse_shop(&shop)?;
            let (db, _, _) = app::open(config).await?;
            let tenant = tenant_by_shop(&db, &shop).await?;
            let found = match member.parse::<MemberId>() {
                Ok(id) => members::get(&db, tenant.id, id).await?,
                Err(_) => {
                    let email = Email::parse(&member).map_err(|_| {
                        anyhow::anyhow!("--member must be a member id or an email address")
                    })?;
                    members::find_by_email(&db, tenant.id, &email).await?
                }
            };
            let m = found.with_context(|| format!("no member `{member}` in {shop}"))?;
            let t = tokens::create(&db, tenant.id, m.id, label.as_deref()).await?;
            print(json!({
                "token_id": t.id,
                "member_id": m.id,
                "shop": shop,
                "token": t.secret.expose_secret(),
            }));
            Ok(())
        }
        TokenCommand::Revoke { shop, token_id } => {
            let shop = parse_shop(&shop)?;
            let id: TokenId = token_id.parse()?;
            let (db, _, _) = app::open(config).await?;
            let tenant = tenant_by_shop(&db, &shop).await?;
            tokens::revoke(&db, tenant.id, id)
                .await
                .map_err(|e| match e {
                    StoreError::NotFound => anyhow::anyhow!("no token {id} in {shop}"),
                    other => other.into(),
                })?;
            print(json!({ "revoked": id }));
            Ok(())
        }
    }
}

async fn rotate_keys(config: &Config) -> anyhow::Result<()> {
    let (db, old, source) = app::open(config).await?;
    let (new, generated) = match std::env::var("GALANTIS_NEW_MASTER_KEY") {
        Ok(v) => (
            MasterKey::from_base64(&v)
                .context("GALANTIS_NEW_MASTER_KEY must be base64 of 32 bytes")?,
            false,
        ),
        Err(_) => (MasterKey::generate()?, true),
    };
    match source {
        KeySource::File => {
            // New key on disk first, then the database, then the swap: a
            // crash at any point leaves a key that opens the data (start-up
            // finishes an interrupted rotation).
            let path = app::master_key_path(config);
            let pending = path.with_extension("key.new");
            new.write_file(&pending)?;
            let n = keyring::rotate(&db, &old, &new).await?;
            std::fs::rename(&pending, &path).context("installing the new master key file")?;
            print(json!({ "rotated_tenants": n, "key_file": path }));
        }
        KeySource::Config => {
            let n = keyring::rotate(&db, &old, &new).await?;
            eprintln!(
                "master key rotated: set GALANTIS_MASTER_KEY to the new key before the next start"
            );
            let mut out = json!({ "rotated_tenants": n });
            if generated {
                out["new_master_key"] = json!(new.to_base64());
            }
            print(out);
        }
    }
    db.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every command and subcommand, with its path (`galantis member add`).
    fn walk(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
        for sub in cmd.get_subcommands() {
            // clap's own `help` subcommand documents itself.
            if sub.get_name() == "help" {
                continue;
            }
            let p = format!("{path} {}", sub.get_name());
            walk(sub, p.clone(), out);
            out.push((p, sub.clone()));
        }
    }

    fn all_commands() -> Vec<(String, clap::Command)> {
        let mut cmd = Cli::command();
        cmd.build();
        let mut out = vec![("galantis".to_owned(), cmd.clone())];
        walk(&cmd, "galantis".into(), &mut out);
        out
    }

    fn long_help(path: &[&str]) -> String {
        let mut cmd = Cli::command();
        cmd.build();
        let mut c = &mut cmd;
        for name in path {
            c = c.find_subcommand_mut(name).expect("a subcommand");
        }
        c.render_long_help().to_string()
    }

    #[test]
    fn the_command_tree_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_and_argument_has_help() {
        let mut missing = Vec::new();
        for (path, cmd) in all_commands() {
            if path != "galantis" && cmd.get_about().is_none() {
                missing.push(format!("{path}: no description"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                let documented = arg
                    .get_help()
                    .or(arg.get_long_help())
                    .is_some_and(|h| !h.to_string().trim().is_empty());
                if !documented {
                    let name = arg
                        .get_long()
                        .map_or_else(|| id.to_uppercase(), |l| format!("--{l}"));
                    missing.push(format!("{path} {name}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "arguments without a help line (add a /// doc comment):\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn member_add_lists_every_role_a_member_may_be_given() {
        let help = long_help(&["member", "add"]);
        // The OWNER comes with the tenant and is never added.
        for role in Role::ALL.into_iter().filter(|r| *r != Role::Owner) {
            assert!(
                help.contains(role.as_str()),
                "--role help does not list {}:\n{help}",
                role.as_str()
            );
        }
    }

    #[test]
    fn serve_help_mentions_nothing_that_does_not_exist_yet() {
        let help = long_help(&["serve"]);
        assert!(!help.to_lowercase().contains("websocket"), "{help}");
        assert!(help.contains("--role") && help.contains("--bind"), "{help}");
    }
}
