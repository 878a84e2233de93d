//! A start-up check of the configured OpenAI-compatible servers: one `GET <base_url>/models` to
//! each distinct base URL, in the background, so a typo'd URL or a server that is not running is
//! said in the log at start rather than at the first turn. Any HTTP answer counts as answering
//! (a 401 or 404 is a server that is there); only no answer within [`PROBE_TIMEOUT`] (refused,
//! unresolvable, silent) is warned about. It never delays start-up and never fails it: turns
//! retry and report their own errors.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{Config, ModelConfig};

/// How long one probe may take, connection and answer together.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The distinct base URLs of `config`'s OpenAI-compatible models, each with the models that use
/// it (by name, or `openai:<model>` for the unnamed default).
pub fn targets(config: &Config) -> BTreeMap<String, Vec<String>> {
    let default_name = config.model_name.clone();
    let named = config.models.iter().map(|(n, m)| (Some(n.clone()), m));
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, m) in std::iter::once((default_name, &config.model)).chain(named) {
        if let ModelConfig::OpenAi(c) = m {
            let name = name.unwrap_or_else(|| format!("openai:{}", c.model));
            out.entry(c.base_url.clone()).or_default().push(name);
        }
    }
    out
}

/// Probes each base URL at once and logs a warning for each that does not answer.
pub async fn warn_unanswered(targets: BTreeMap<String, Vec<String>>) {
    let Ok(http) = reqwest::Client::builder().timeout(PROBE_TIMEOUT).build() else {
        return;
    };
    let probes = targets.into_iter().map(|(base_url, models)| {
        let http = http.clone();
        async move {
            let url = format!("{}/models", base_url.trim_end_matches('/'));
            match http.get(&url).send().await {
                Ok(r) => tracing::info!(
                    base_url,
                    models = models.join(", "),
                    status = r.status().as_u16(),
                    "the model server answers"
                ),
                Err(e) => tracing::warn!(
                    base_url,
                    models = models.join(", "),
                    error = %error_chain(&e),
                    "the model server does not answer (GET {url} within {PROBE_TIMEOUT:?}); turns of these models will fail until it does"
                ),
            }
        }
    });
    futures_util::future::join_all(probes).await;
}

/// reqwest's error with its causes: "error sending request" alone does not say "refused".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}
