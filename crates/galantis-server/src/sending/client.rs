//! The WhatsApp Cloud API client (reqwest with rustls): sends, number info,
//! templates. It implements the `MessageSender` port; the Meta sandbox
//! speaks the same API, so the same client serves both (every sandbox
//! response carries `x-galantis-sandbox: true`, which marks the send).

use std::time::Duration;

use galantis_core::sending::{Accepted, Lookup, MessageSender, MetaError, SendError, SendRequest};
use galantis_sandbox::meta::SANDBOX_HEADER;
use reqwest::StatusCode;
use serde_json::Value;

/// Meta's production Graph endpoint.
pub const GRAPH_BASE_URL: &str = "https://graph.facebook.com";

/// A Cloud API client for one base URL and Graph version.
#[derive(Clone)]
pub struct CloudApi {
    http: reqwest::Client,
    base_url: String,
    version: String,
    /// The sandbox operator token, for the control routes `lookup` reads
    /// (only ever set for the embedded sandbox: never sent to Meta).
    control_token: Option<String>,
}

impl CloudApi {
    pub fn new(
        base_url: &str,
        version: &str,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .pool_max_idle_per_host(64)
            .user_agent(concat!("galantis/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self::with_client(http, base_url, version))
    }

    pub fn with_client(http: reqwest::Client, base_url: &str, version: &str) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            version: version.to_owned(),
            control_token: None,
        }
    }

    /// Reads the sandbox's control routes with this operator token.
    pub fn with_control_token(mut self, token: Option<String>) -> Self {
        self.control_token = token;
        self
    }

    fn control_get(&self, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.get(format!("{}{path}", self.base_url));
        match &self.control_token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}/{}", self.base_url, self.version, path)
    }

    /// GET a Graph object with `token`.
    pub async fn get(&self, path: &str, token: &str) -> Result<Value, SendError> {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await;
        graph_json(r).await.map(|(v, _)| v)
    }

    /// Phone number info (`verified_name`, `display_phone_number`, …):
    /// also proves that the token may use the number.
    pub async fn number_info(
        &self,
        phone_number_id: &str,
        token: &str,
    ) -> Result<Value, SendError> {
        self.get(phone_number_id, token).await
    }

    /// Every template of a WABA (follows the `after` cursor).
    pub async fn list_templates(
        &self,
        waba_id: &str,
        token: &str,
    ) -> Result<Vec<Value>, SendError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..100 {
            let mut req = self
                .http
                .get(self.url(&format!("{waba_id}/message_templates")))
                .bearer_auth(token)
                .query(&[("limit", "100")]);
            if let Some(a) = &after {
                req = req.query(&[("after", a.as_str())]);
            }
            let (page, _) = graph_json(req.send().await).await?;
            out.extend(page["data"].as_array().cloned().unwrap_or_default());
            after = page
                .pointer("/paging/cursors/after")
                .and_then(Value::as_str)
                .filter(|_| page.pointer("/paging/next").is_some())
                .map(str::to_owned);
            if after.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Submits a template for review: `{"id","status","category"}`.
    pub async fn create_template(
        &self,
        waba_id: &str,
        token: &str,
        body: &Value,
    ) -> Result<Value, SendError> {
        let r = self
            .http
            .post(self.url(&format!("{waba_id}/message_templates")))
            .bearer_auth(token)
            .json(body)
            .send()
            .await;
        graph_json(r).await.map(|(v, _)| v)
    }

    /// Deletes a template by name (all its languages, as Meta does).
    pub async fn delete_template(
        &self,
        waba_id: &str,
        token: &str,
        name: &str,
    ) -> Result<(), SendError> {
        let r = self
            .http
            .delete(self.url(&format!("{waba_id}/message_templates")))
            .bearer_auth(token)
            .query(&[("name", name)])
            .send()
            .await;
        graph_json(r).await.map(|_| ())
    }
}

fn transport(e: &reqwest::Error) -> SendError {
    // A connection that never opened cannot have delivered the request;
    // anything later (timeout, reset, unreadable answer) might have.
    SendError::Transport {
        message: format!("{e}"),
        maybe_accepted: !e.is_connect(),
    }
}

/// Reads a Graph answer: JSON on success, Meta's error envelope otherwise.
/// Returns the body and whether the answer came from the sandbox.
async fn graph_json(
    r: Result<reqwest::Response, reqwest::Error>,
) -> Result<(Value, bool), SendError> {
    let r = r.map_err(|e| transport(&e))?;
    let status = r.status();
    let sandbox = r
        .headers()
        .get(SANDBOX_HEADER)
        .is_some_and(|v| v.as_bytes() == b"true");
    let bytes = r.bytes().await.map_err(|e| transport(&e))?;
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    if let Some(err) = body.as_ref().and_then(|b| b.get("error")) {
        return Err(SendError::Meta(meta_error(err, status)));
    }
    if !status.is_success() {
        // No error envelope (a proxy's 502 page…): nothing we can classify
        // by code, so treat it as a transport problem (retryable).
        return Err(SendError::Transport {
            message: format!("HTTP {status} without a Graph error body"),
            maybe_accepted: status.is_server_error(),
        });
    }
    body.map(|b| (b, sandbox)).ok_or(SendError::Transport {
        message: "the answer is not JSON".into(),
        maybe_accepted: true,
    })
}

fn meta_error(e: &Value, status: StatusCode) -> MetaError {
    MetaError {
        code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
        subcode: e.get("error_subcode").and_then(Value::as_i64),
        message: e
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("unknown error")
            .to_owned(),
        details: e
            .pointer("/error_data/details")
            .and_then(Value::as_str)
            .map(str::to_owned),
        http_status: status.as_u16(),
    }
}

impl MessageSender for CloudApi {
    async fn send(&self, request: &SendRequest<'_>) -> Result<Accepted, SendError> {
        let r = self
            .http
            .post(self.url(&format!("{}/messages", request.phone_number_id)))
            .bearer_auth(request.access_token)
            .json(request.body)
            .send()
            .await;
        let (body, sandbox) = graph_json(r).await?;
        let wamid = body
            .pointer("/messages/0/id")
            .and_then(Value::as_str)
            .ok_or(SendError::Transport {
                message: "Meta's answer has no message id".into(),
                maybe_accepted: true,
            })?;
        Ok(Accepted {
            wamid: wamid.to_owned(),
            wa_id: body
                .pointer("/contacts/0/wa_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            sandbox,
        })
    }

    /// The sandbox can say whether it accepted a message with this key
    /// (its control API); the real Cloud API cannot (`Unsupported`): there
    /// the status webhooks, which echo the key, reconcile instead.
    async fn lookup(&self, _phone_number_id: &str, key: &str) -> Result<Lookup, SendError> {
        let r = self
            .control_get("/sandbox/messages")
            .query(&[("callback_data", key), ("limit", "1")])
            .send()
            .await
            .map_err(|e| transport(&e))?;
        let sandbox = r
            .headers()
            .get(SANDBOX_HEADER)
            .is_some_and(|v| v.as_bytes() == b"true");
        if !sandbox || !r.status().is_success() {
            return Ok(Lookup::Unsupported);
        }
        let log: Value = r.json().await.map_err(|e| transport(&e))?;
        if let Some(id) = first_message(&log)
            .and_then(|m| m.get("id"))
            .and_then(Value::as_str)
        {
            return Ok(Lookup::Accepted {
                wamid: Some(id.to_owned()),
            });
        }
        // The log is bounded; the counters are not.
        let counters: Value = self
            .control_get("/sandbox/counters")
            .query(&[("callback_data", key)])
            .send()
            .await
            .map_err(|e| transport(&e))?
            .json()
            .await
            .map_err(|e| transport(&e))?;
        let n = counters
            .pointer(&format!(
                "/accepted_by_callback_data/{}",
                key.replace('~', "~0").replace('/', "~1")
            ))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        Ok(if n > 0 {
            Lookup::Accepted { wamid: None }
        } else {
            Lookup::NotFound
        })
    }
}

fn first_message(log: &Value) -> Option<&Value> {
    match log {
        Value::Array(a) => a.first(),
        other => other
            .get("messages")
            .or_else(|| other.get("data"))
            .and_then(Value::as_array)
            .and_then(|a| a.first()),
    }
}
