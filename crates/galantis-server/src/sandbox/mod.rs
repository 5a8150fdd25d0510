//! The server's side of the Meta sandbox (`galantis_sandbox::meta`): the
//! `galantis sandbox meta` command, and the operator token of the sandbox
//! `galantis serve` mounts at `/sandbox-meta` (ADR 0007). The sandbox itself
//! knows nothing of the server's configuration: `Sending::new` builds its
//! `SandboxConfig` from what is here.

pub mod cli;

use anyhow::Context;

/// The operator token file in the data directory (embedded mode).
pub const TOKEN_FILE: &str = "sandbox.token";

/// `n` random bytes as lower-case hex.
pub fn random_hex(n: usize) -> anyhow::Result<String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
    Ok(hex::encode(b))
}

/// The operator token of the mounted sandbox: `[sandbox] token` when
/// configured, else `<data_dir>/sandbox.token`, created (mode 0600) on first
/// use. A new token is printed once, in the start-up log; afterwards only
/// where it is.
pub fn operator_token(config: &crate::config::Config) -> anyhow::Result<secrecy::SecretString> {
    if let Some(t) = &config.sandbox.token {
        return Ok(t.clone());
    }
    if !config.is_embedded() {
        anyhow::bail!(
            "GALANTIS_SANDBOX_TOKEN is required when the sandbox is enabled with PostgreSQL"
        );
    }
    let path = config.data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().len() >= 16 => {
            tracing::info!(path = %path.display(), "Meta sandbox mounted at /sandbox-meta; its operator token is in this file");
            return Ok(secrecy::SecretString::from(text.trim().to_owned()));
        }
        Ok(_) => anyhow::bail!(
            "{} is too short to be a sandbox token: delete it to generate a new one",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(anyhow::anyhow!(e).context(format!("reading {}", path.display())));
        }
    }
    let token = random_hex(32)?;
    write_private(&path, &token)?;
    tracing::warn!(
        path = %path.display(),
        token = %token,
        "generated the Meta sandbox operator token (shown this once); control routes under /sandbox-meta/sandbox need `Authorization: Bearer <token>`"
    );
    Ok(secrecy::SecretString::from(token))
}

/// Owner-only, atomically (temporary file, then rename), like the master key.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("installing {}", path.display()))
}
