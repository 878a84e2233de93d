//! The HTTP side: one `reqwest` client (its connection pool shared by all turns), the
//! `POST /chat/completions` that opens a stream, retries with backoff for 429, 5xx and refused
//! connections, and a clear error text for every way a request can fail. It never logs the API
//! key, and reads no stream: `stream.rs` does.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Response, StatusCode, Url};

use super::config::OpenAiConfig;
use super::wire::{error_excerpt, ChatRequest};
use crate::model::ModelError;

/// Longest wait between two attempts, whatever the backoff or `Retry-After` says.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// Most of an error body read for its excerpt.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Longest excerpt of an error body in an error text.
const EXCERPT_CHARS: usize = 300;

pub struct Client {
    http: reqwest::Client,
    url: Url,
    model: String,
    api_key: Option<String>,
    connect_timeout: Duration,
    chunk_timeout: Duration,
    max_retries: u32,
    retry_base_delay: Duration,
}

impl Client {
    pub fn new(config: &OpenAiConfig) -> Result<Client, ModelError> {
        let endpoint = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        let url = Url::parse(&endpoint).map_err(|e| {
            ModelError::Failed(format!("invalid base URL {:?}: {e}", config.base_url))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ModelError::Failed(format!(
                "invalid base URL {:?}: only http and https are supported",
                config.base_url
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| ModelError::Failed(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Client {
            http,
            url,
            model: config.model.clone(),
            api_key: config.api_key.clone(),
            connect_timeout: config.connect_timeout,
            chunk_timeout: config.chunk_timeout,
            max_retries: config.max_retries,
            retry_base_delay: config.retry_base_delay,
        })
    }

    /// Sends `request` and returns the response once it is a success, its body not yet read.
    /// With `may_retry` (nothing streamed in this turn yet), a refused connection, 429 or 5xx is
    /// retried up to `max_retries` times, waiting `Retry-After` or an exponential backoff.
    pub async fn open_stream(
        &self,
        request: &ChatRequest<'_>,
        may_retry: bool,
    ) -> Result<Response, ModelError> {
        let body = serde_json::to_vec(request)
            .map_err(|e| ModelError::Failed(format!("cannot encode the request: {e}")))?;
        let attempts = if may_retry { self.max_retries + 1 } else { 1 };
        let mut attempt = 0;
        loop {
            attempt += 1;
            tracing::debug!(url = %self.url, model = %self.model, attempt, "openai request");
            let (error, retryable, retry_after) = match self.send_once(body.clone()).await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let status = response.status();
                    let retry_after = parse_retry_after(response.headers().get(RETRY_AFTER));
                    let excerpt = read_excerpt(response, self.chunk_timeout).await;
                    let retryable =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    (self.status_error(status, &excerpt), retryable, retry_after)
                }
                Err((error, retryable)) => (error, retryable, None),
            };
            if !retryable {
                return Err(ModelError::Failed(error));
            }
            if !may_retry {
                return Err(ModelError::Failed(format!(
                    "{error} (not retried: this turn has already streamed text)"
                )));
            }
            if attempt >= attempts {
                return Err(ModelError::Failed(format!(
                    "{error} (gave up after {attempt} attempt(s))"
                )));
            }
            let delay = retry_delay(self.retry_base_delay, attempt, retry_after);
            tracing::warn!(attempt, ?delay, %error, "openai request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt. An error comes with whether it may be retried (a refused connection may be
    /// a server still starting; a timeout would only make the user wait again).
    async fn send_once(&self, body: Vec<u8>) -> Result<Response, (String, bool)> {
        let mut request = self
            .http
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "text/event-stream")
            .body(body);
        if let Some(key) = &self.api_key {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                (
                    "the API key holds characters not allowed in a header".to_owned(),
                    false,
                )
            })?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        // reqwest bounds the connect; the wait for the response head is a chunk's silence.
        let limit = self.connect_timeout + self.chunk_timeout;
        match tokio::time::timeout(limit, request.send()).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(self.send_error(&e)),
            Err(_) => Err((
                format!("no response from {} within {limit:?}", self.url),
                false,
            )),
        }
    }

    fn send_error(&self, e: &reqwest::Error) -> (String, bool) {
        let url = &self.url;
        let cause = root_cause(e);
        if e.is_connect() && e.is_timeout() {
            let limit = self.connect_timeout;
            (
                format!("could not connect to {url} within {limit:?} (connect timeout)"),
                false,
            )
        } else if e.is_connect() {
            (format!("could not connect to {url}: {cause}"), true)
        } else if e.is_timeout() {
            (format!("request to {url} timed out: {cause}"), false)
        } else {
            (format!("request to {url} failed: {cause}"), false)
        }
    }

    fn status_error(&self, status: StatusCode, excerpt: &str) -> String {
        let code = match status.canonical_reason() {
            Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
            None => format!("HTTP {}", status.as_u16()),
        };
        match status.as_u16() {
            401 | 403 => {
                let hint = if self.api_key.is_none() {
                    "; no API key is configured"
                } else {
                    ""
                };
                format!("the server refused the API key ({code}{hint}): {excerpt}")
            }
            404 => format!(
                "model `{}` or URL {} not found ({code}): {excerpt}",
                self.model, self.url
            ),
            429 => format!("rate limited by {} ({code}): {excerpt}", self.url),
            500..=599 => format!("server error from {} ({code}): {excerpt}", self.url),
            _ => format!("the server rejected the request ({code}): {excerpt}"),
        }
    }
}

/// A short text of an error response's body, read for at most `limit`.
pub async fn read_excerpt(response: Response, limit: Duration) -> String {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    let read = async {
        while let Some(Ok(chunk)) = chunks.next().await {
            body.extend_from_slice(&chunk);
            if body.len() >= MAX_ERROR_BODY {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(limit, read).await;
    error_excerpt(&String::from_utf8_lossy(&body), EXCERPT_CHARS)
}

/// The innermost cause, which says what happened ("Connection refused (os error 111)"), where
/// reqwest's own text only says that sending failed.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// `Retry-After` as seconds (the HTTP-date form is not used by model servers and is ignored).
pub fn parse_retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let secs: f64 = value?.to_str().ok()?.trim().parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        secs.min(MAX_RETRY_DELAY.as_secs_f64()),
    ))
}

/// The wait after failed attempt number `attempt` (1-based): `Retry-After` when the server
/// gave one, else `base` doubled per attempt; at most `MAX_RETRY_DELAY` either way.
pub fn retry_delay(base: Duration, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let backoff = || {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        base.saturating_mul(factor)
    };
    retry_after.unwrap_or_else(backoff).min(MAX_RETRY_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_millis(100);
        assert_eq!(retry_delay(base, 1, None), Duration::from_millis(100));
        assert_eq!(retry_delay(base, 2, None), Duration::from_millis(200));
        assert_eq!(retry_delay(base, 4, None), Duration::from_millis(800));
        assert_eq!(retry_delay(base, 40, None), MAX_RETRY_DELAY);
        assert_eq!(
            retry_delay(base, 3, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(
            parse_retry_after(Some(&h("2"))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_retry_after(Some(&h(" 0.5 "))),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_retry_after(Some(&h("86400"))), Some(MAX_RETRY_DELAY));
        assert_eq!(
            parse_retry_after(Some(&h("Wed, 21 Oct 2015 07:28:00 GMT"))),
            None
        );
        assert_eq!(parse_retry_after(Some(&h("-1"))), None);
        assert_eq!(parse_retry_after(None), None);
    }

    #[test]
    fn base_url_must_be_http() {
        let ok = OpenAiConfig::new("m", "http://127.0.0.1:8080/v1/");
        assert_eq!(
            Client::new(&ok).unwrap().url.as_str(),
            "http://127.0.0.1:8080/v1/chat/completions"
        );
        for bad in ["not a url", "ftp://host/v1"] {
            let err = Client::new(&OpenAiConfig::new("m", bad)).err().unwrap();
            assert!(err.to_string().contains("invalid base URL"), "{err}");
        }
    }
}
