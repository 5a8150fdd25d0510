//! The tenant API of a bench's served node, over loopback with the
//! owner's token (the campaign and restock scenarios drive it).

use anyhow::Context;
use reqwest::Method;
use serde_json::Value;

pub(super) struct TenantApi {
    pub client: reqwest::Client,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub token: String,
}

impl TenantApi {
    /// `method path` with `body` as JSON; the answer's JSON, or an error
    /// naming the call when it is not a success.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "{method} {path}: {status} {v}");
        Ok(v)
    }
}
