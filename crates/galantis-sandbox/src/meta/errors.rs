//! Meta's error shapes: the Graph API error envelope returned synchronously,
//! and the `errors[]` objects carried by `failed` status webhooks.
//!
//! Codes, titles and HTTP statuses follow Meta's Cloud API error-code table.
//! Clients should branch on `code`, never on the HTTP status (Meta itself is
//! not consistent about the status of throttling errors, which is why the
//! sandbox makes that one configurable: see `SandboxSettings::throttle_http_status`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Where Meta's error-code reference lives (echoed in webhook `errors[].href`).
pub const ERROR_CODES_HREF: &str =
    "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/";

/// A Graph API error, rendered as
/// `{"error":{"message","type","code","error_data":{…},"fbtrace_id"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    pub code: i64,
    pub status: StatusCode,
    /// The full `message` (`"(#131047) Re-engagement message"`).
    pub message: String,
    pub details: String,
    /// `OAuthException` for almost everything; `GraphMethodException` for
    /// objects that do not exist (or that the token may not see).
    pub kind: &'static str,
    pub subcode: Option<i64>,
}

impl GraphError {
    /// The error Meta returns for `code`, with its standard details.
    pub fn code(code: i64) -> Self {
        let info = info(code);
        let message = if code == 190 {
            // Graph-level auth errors carry no "(#code)" prefix.
            info.title.to_owned()
        } else {
            format!("(#{code}) {}", info.title)
        };
        Self {
            code,
            status: info.status,
            message,
            details: info.details.to_owned(),
            kind: "OAuthException",
            subcode: None,
        }
    }

    /// Replaces the `error_data.details` sentence.
    pub fn details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// Code 100, "Invalid parameter", explaining which one.
    pub fn invalid(details: impl Into<String>) -> Self {
        Self::code(100).details(details)
    }

    /// Code 100 with a specific Graph message (missing required fields are
    /// reported this way, e.g. "(#100) The parameter to is required.").
    pub fn param(message: impl Into<String>) -> Self {
        let message = message.into();
        Self::code(100).details(message.clone()).message(message)
    }

    fn message(mut self, text: String) -> Self {
        self.message = format!("(#{}) {text}", self.code);
        self
    }

    /// The object (phone number, WABA, template) does not exist or this
    /// token may not see it: the two are indistinguishable on purpose.
    pub fn unknown_object(id: &str, method: &str) -> Self {
        let text = format!(
            "Unsupported {method} request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."
        );
        Self {
            code: 100,
            status: StatusCode::BAD_REQUEST,
            message: text.clone(),
            details: text,
            kind: "GraphMethodException",
            subcode: Some(33),
        }
    }

    /// Throttling codes, whose HTTP status the sandbox lets you choose.
    pub fn is_throttle(&self) -> bool {
        matches!(self.code, 4 | 80007 | 130429 | 131048 | 131056 | 133016)
    }

    pub fn body(&self) -> Value {
        let mut error = json!({
            "message": self.message,
            "type": self.kind,
            "code": self.code,
            "error_data": {
                "messaging_product": "whatsapp",
                "details": self.details,
            },
            "fbtrace_id": fbtrace_id(),
        });
        if let Some(sub) = self.subcode {
            error["error_subcode"] = json!(sub);
        }
        json!({ "error": error })
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// The `errors[]` element of a `failed` status webhook for `code`.
pub fn webhook_error(code: i64, details: Option<&str>) -> Value {
    let info = info(code);
    json!({
        "code": code,
        "title": info.title,
        "message": info.title,
        "error_data": { "details": details.unwrap_or(info.details) },
        "href": ERROR_CODES_HREF,
    })
}

/// An opaque trace id, like Graph's (`AbC…`); random so that log lines of
/// different requests never collide.
pub fn fbtrace_id() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 16];
    // The id is cosmetic; if the OS RNG fails, zeros are still a valid id.
    let _ = getrandom::fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

struct Info {
    title: &'static str,
    details: &'static str,
    status: StatusCode,
}

const fn i(title: &'static str, details: &'static str, status: StatusCode) -> Info {
    Info {
        title,
        details,
        status,
    }
}

/// Meta's catalogue for the codes Galantis meets. Unknown codes still render
/// (as a 400 "Unknown error") so a failure rule may use any code.
#[rustfmt::skip]
fn info(code: i64) -> Info {
    use StatusCode as S;
    match code {
        0 => i("AuthException", "We were unable to authenticate the app user.", S::UNAUTHORIZED),
        1 => i("API Unknown", "Invalid request or possible server error.", S::BAD_REQUEST),
        2 => i("API Service", "Temporary due to downtime or due to being overloaded.", S::SERVICE_UNAVAILABLE),
        3 => i("API Method", "Capability or permissions issue.", S::INTERNAL_SERVER_ERROR),
        4 => i("Application request limit reached", "The app has reached its API call rate limit.", S::TOO_MANY_REQUESTS),
        10 => i("Permission Denied", "Permission is either not granted or has been removed.", S::FORBIDDEN),
        100 => i("Invalid parameter", "The request included one or more unsupported or misspelled parameters.", S::BAD_REQUEST),
        190 => i("Invalid OAuth access token - Cannot parse access token", "The access token is invalid, has expired or has been revoked.", S::UNAUTHORIZED),
        200 => i("Permissions error", "Permission is either not granted or has been removed.", S::FORBIDDEN),
        368 => i("Temporarily blocked for policies violations", "The WhatsApp Business Account associated with the app has been restricted or disabled for violating a platform policy.", S::FORBIDDEN),
        80007 => i("Rate limit issues", "The WhatsApp Business Account has reached its rate limit.", S::TOO_MANY_REQUESTS),
        130429 => i("Rate limit hit", "Message failed to send because there were too many messages sent from this phone number in a short period of time.", S::TOO_MANY_REQUESTS),
        130472 => i("User's number is part of an experiment", "Message was not sent as part of an experiment.", S::BAD_REQUEST),
        131000 => i("Something went wrong", "Message failed to send due to an unknown error.", S::INTERNAL_SERVER_ERROR),
        131005 => i("Access denied", "Permission is either not granted or has been removed.", S::FORBIDDEN),
        131008 => i("Required parameter is missing", "The request is missing a required parameter.", S::BAD_REQUEST),
        131009 => i("Parameter value is not valid", "One or more parameter values are invalid.", S::BAD_REQUEST),
        131016 => i("Service unavailable", "A service is temporarily unavailable.", S::SERVICE_UNAVAILABLE),
        131021 => i("Recipient cannot be sender", "Sender and recipient phone number is the same.", S::BAD_REQUEST),
        131026 => i("Message undeliverable", "Unable to deliver message. Reasons can include: the recipient phone number is not a WhatsApp phone number; the recipient has not accepted the new Terms of Service; the recipient is using an old WhatsApp version.", S::BAD_REQUEST),
        131031 => i("Account has been locked", "The WhatsApp Business Account is restricted or disabled for violating a platform policy, or the data in the request could not be verified.", S::FORBIDDEN),
        131042 => i("Business eligibility payment issue", "There was an error related to your payment method.", S::BAD_REQUEST),
        131045 => i("Incorrect certificate", "Message failed to send due to a phone number registration error.", S::INTERNAL_SERVER_ERROR),
        131047 => i("Re-engagement message", "Message failed to send because more than 24 hours have passed since the customer last replied to this number.", S::BAD_REQUEST),
        131048 => i("Spam rate limit hit", "Message failed to send because there are restrictions on how many messages can be sent from this phone number.", S::TOO_MANY_REQUESTS),
        131049 => i("This message was not delivered to maintain healthy ecosystem engagement.", "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.", S::BAD_REQUEST),
        131050 => i("User has stopped marketing messages", "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business.", S::BAD_REQUEST),
        131051 => i("Unsupported message type", "Unsupported message type.", S::BAD_REQUEST),
        131052 => i("Media download error", "Unable to download the media sent by the user.", S::BAD_REQUEST),
        131053 => i("Media upload error", "Unable to upload the media used in the message.", S::BAD_REQUEST),
        131056 => i("(Business Account, Consumer Account) pair rate limit hit", "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.", S::TOO_MANY_REQUESTS),
        131057 => i("Account in maintenance mode", "Business Account is in maintenance mode.", S::INTERNAL_SERVER_ERROR),
        132000 => i("Number of parameters does not match the expected number of params", "The number of variable parameter values included in the request did not match the number of variable parameters defined in the template.", S::BAD_REQUEST),
        132001 => i("Template name does not exist in the translation", "The template does not exist in the specified language or the template has not been approved.", S::NOT_FOUND),
        132005 => i("Translated text too long", "Translated text is too long.", S::BAD_REQUEST),
        132007 => i("Template Format Character Policy Violated", "Template content violates a WhatsApp policy.", S::BAD_REQUEST),
        132012 => i("Parameter format does not match format in the created template", "Variable parameter values formatted incorrectly.", S::BAD_REQUEST),
        132015 => i("Template is Paused", "Template is paused due to low quality so it cannot be sent in a template message.", S::BAD_REQUEST),
        132016 => i("Template is Disabled", "Template has been paused too many times due to low quality and is now permanently disabled.", S::BAD_REQUEST),
        133010 => i("Phone number Not Registered", "The phone number is not registered on the WhatsApp Business Platform.", S::BAD_REQUEST),
        _ => i("Unknown error", "An unknown error occurred.", S::BAD_REQUEST),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_metas_shape() {
        let e = GraphError::code(131047);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let b = e.body();
        assert_eq!(b["error"]["message"], "(#131047) Re-engagement message");
        assert_eq!(b["error"]["type"], "OAuthException");
        assert_eq!(b["error"]["code"], 131047);
        assert_eq!(b["error"]["error_data"]["messaging_product"], "whatsapp");
        assert!(b["error"]["fbtrace_id"].as_str().unwrap().len() >= 16);
        assert!(b["error"].get("error_subcode").is_none());
    }

    #[test]
    fn statuses_follow_metas_table() {
        assert_eq!(GraphError::code(190).status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            GraphError::code(190).message,
            "Invalid OAuth access token - Cannot parse access token"
        );
        assert_eq!(
            GraphError::code(130429).status,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(GraphError::code(132001).status, StatusCode::NOT_FOUND);
        assert_eq!(GraphError::code(368).status, StatusCode::FORBIDDEN);
        assert_eq!(GraphError::code(424242).status, StatusCode::BAD_REQUEST);
        assert!(GraphError::code(131056).is_throttle());
        assert!(!GraphError::code(131047).is_throttle());
    }

    #[test]
    fn unknown_objects_are_graph_method_exceptions() {
        let b = GraphError::unknown_object("123", "post").body();
        assert_eq!(b["error"]["type"], "GraphMethodException");
        assert_eq!(b["error"]["code"], 100);
        assert_eq!(b["error"]["error_subcode"], 33);
    }

    #[test]
    fn webhook_errors_carry_title_details_and_href() {
        let e = webhook_error(131026, None);
        assert_eq!(e["code"], 131026);
        assert_eq!(e["title"], "Message undeliverable");
        assert_eq!(e["message"], e["title"]);
        assert!(
            e["error_data"]["details"]
                .as_str()
                .unwrap()
                .contains("recipient")
        );
        assert_eq!(
            webhook_error(131026, Some("x"))["error_data"]["details"],
            "x"
        );
    }
}
