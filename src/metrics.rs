//! Prometheus metrics (design.md §14) and the per-request record the access log reads.
//!
//! Label values come only from configuration names and fixed sets: every hook takes the
//! `Config` and turns a name the config does not know into `other`, so the number of series
//! is bounded by the configuration, whatever clients send. The registry lives in one `Arc`
//! that a reload hands to the new state, so counters survive it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::openai::Usage;
use crate::config::{CondenseMethod, Config};
use crate::context::model::CondenseError;
use crate::providers::{ChatOutcome, Phase, ProviderError};
use crate::routing::Target;

/// The value of a label whose real value the configuration does not name.
pub const OTHER: &str = "other";
/// `provider` of a request that no provider served (unknown model, bad request).
pub const NONE: &str = "none";

/// The OpenMetrics content type `render` produces.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    api: &'static str,
    target: String,
    provider: String,
    model: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiProvider {
    api: &'static str,
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderModel {
    provider: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    provider: String,
    model: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    provider: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RotationLabel {
    rotation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CondenseLabels {
    method: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AutoselectLabels {
    autoselect: String,
    choice: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    ])
}

fn overhead_histogram() -> Histogram {
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    ])
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Histograms<ApiProvider>,
    ttft: Histograms<ProviderModel>,
    overhead: Histogram,
    tokens: Family<TokenLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    failovers: Family<RotationLabel, Counter>,
    provider_up: Family<ProviderLabel, Gauge>,
    condensations: Family<CondenseLabels, Counter>,
    autoselect: Family<AutoselectLabels, Counter>,
    inflight: Gauge,
    /// 1 while the state backend answers (always for `memory`), 0 while Redis is down.
    state_backend_up: Gauge,
    /// The per provider/model series, resolved once per label pair: a served request then
    /// looks its pair up once instead of building four label sets (six String allocations,
    /// four hashes) every time.
    by_model: parking_lot::RwLock<HashMap<String, HashMap<String, Arc<ModelSeries>>>>,
}

/// The series of one provider/model label pair (handles share the registry's values).
struct ModelSeries {
    ttft: Histogram,
    prompt: Counter,
    completion: Counter,
    effective_context: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A served `provider`/`model` as label values: names the config does not know are `other`.
pub fn provider_model(config: &Config, provider: &str, model: &str) -> (String, String) {
    let Some(p) = config.providers.get(provider) else {
        return (OTHER.into(), OTHER.into());
    };
    let known = p.models.iter().any(|m| m.name == model)
        || config.rotations.values().any(|r| {
            r.providers
                .iter()
                .any(|e| e.provider_id == provider && e.models.iter().any(|m| m.name == model))
        });
    (
        provider.to_string(),
        if known {
            model.to_string()
        } else {
            OTHER.into()
        },
    )
}

/// The `target` label of a resolved reference.
fn target_label(config: &Config, target: &Target) -> String {
    match target {
        Target::Provider { provider, model } => match provider_model(config, provider, model) {
            (p, m) if p != OTHER => format!("{p}/{m}"),
            _ => OTHER.into(),
        },
        Target::Rotation(n) if config.rotations.contains_key(n) => format!("rotation/{n}"),
        Target::Autoselect(n) if config.autoselect.contains_key(n) => format!("autoselect/{n}"),
        _ => OTHER.into(),
    }
}

/// A fixed reason per kind of upstream failure.
fn failure_reason(e: &ProviderError) -> &'static str {
    match e {
        ProviderError::Connect(_) => "connect",
        ProviderError::Timeout(Phase::Connect) => "timeout_connect",
        ProviderError::Timeout(Phase::FirstByte) => "timeout_first_byte",
        ProviderError::Timeout(Phase::Idle) => "timeout_idle",
        ProviderError::RateLimited { .. } => "rate_limited",
        ProviderError::Upstream { status, .. } if *status >= 500 => "status_5xx",
        ProviderError::Upstream { .. } => "status_4xx",
        ProviderError::Protocol(_) => "protocol",
        ProviderError::MissingKey { .. } => "missing_key",
    }
}

fn method_label(m: CondenseMethod) -> &'static str {
    match m {
        CondenseMethod::Hierarchical => "hierarchical",
        CondenseMethod::Conversational => "conversational",
        CondenseMethod::Semantic => "semantic",
        CondenseMethod::Algorithmic => "algorithmic",
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            ttft: Family::new_with_constructor(latency_histogram),
            overhead: overhead_histogram(),
            tokens: Family::default(),
            failures: Family::default(),
            failovers: Family::default(),
            provider_up: Family::default(),
            condensations: Family::default(),
            autoselect: Family::default(),
            inflight: Gauge::default(),
            state_backend_up: Gauge::default(),
            by_model: Default::default(),
            registry: Registry::default(),
        };
        // The counter type adds `_total` to these names.
        registry.register("aisbf_requests", "Requests answered", m.requests.clone());
        registry.register(
            "aisbf_request_duration_seconds",
            "Request duration until the last byte of the response",
            m.duration.clone(),
        );
        registry.register(
            "aisbf_time_to_first_token_seconds",
            "Streamed answers: upstream call to its first event",
            m.ttft.clone(),
        );
        registry.register(
            "aisbf_gateway_overhead_seconds",
            "Time spent in aisbf itself before the response head, upstream waits excluded",
            m.overhead.clone(),
        );
        registry.register("aisbf_tokens", "Tokens by kind", m.tokens.clone());
        registry.register(
            "aisbf_upstream_failures",
            "Failed upstream calls, before or during a stream",
            m.failures.clone(),
        );
        registry.register(
            "aisbf_failovers",
            "Rotation candidates given up for the next one",
            m.failovers.clone(),
        );
        registry.register(
            "aisbf_provider_up",
            "1 while a provider serves, 0 while it cools down",
            m.provider_up.clone(),
        );
        registry.register(
            "aisbf_condensations",
            "Condensation runs by method and outcome",
            m.condensations.clone(),
        );
        registry.register(
            "aisbf_autoselect",
            "Autoselect decisions by choice",
            m.autoselect.clone(),
        );
        registry.register(
            "aisbf_inflight_requests",
            "Requests whose response has not ended",
            m.inflight.clone(),
        );
        registry.register(
            "aisbf_state_backend_up",
            "1 while the state backend (memory, or Redis) answers, 0 while Redis is down",
            m.state_backend_up.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The exposition, after setting `aisbf_provider_up` from `up` (provider id, serving)
    /// and `aisbf_state_backend_up` from `backend_up`.
    pub fn render(&self, up: impl IntoIterator<Item = (String, bool)>, backend_up: bool) -> String {
        self.state_backend_up.set(i64::from(backend_up));
        // Providers a reload removed must not linger as series.
        self.provider_up.clear();
        for (provider, serving) in up {
            self.provider_up
                .get_or_create(&ProviderLabel { provider })
                .set(i64::from(serving));
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("cannot encode metrics: {e}");
        }
        out
    }

    pub fn inflight(&self, delta: i64) {
        self.inflight.inc_by(delta);
    }

    /// A request of `api` has ended (its last byte sent, or the client gone).
    pub fn request_done(
        &self,
        api: &'static str,
        record: &Record,
        status: u16,
        duration: Duration,
        head: Duration,
    ) {
        let provider = record.provider_label.clone().unwrap_or_else(|| NONE.into());
        self.requests
            .get_or_create(&RequestLabels {
                api,
                target: record.target_label.clone().unwrap_or_else(|| OTHER.into()),
                provider: provider.clone(),
                model: record.model_label.clone().unwrap_or_else(|| OTHER.into()),
                status,
            })
            .inc();
        self.duration
            .get_or_create(&ApiProvider { api, provider })
            .observe(duration.as_secs_f64());
        if record.provider_label.is_some() {
            self.overhead
                .observe(head.saturating_sub(record.upstream_wait).as_secs_f64());
        }
    }

    /// The reference a request resolved to (the first one: condensation and selector calls
    /// resolve their own targets later and must not replace it).
    pub fn resolved(&self, config: &Config, target: &Target) {
        note(|r| {
            if r.target_label.is_none() {
                r.target_label = Some(target_label(config, target));
            }
        });
    }

    /// An upstream answered (a whole answer, or a stream's first event); `waited` is the
    /// time spent waiting for it.
    pub fn served(
        &self,
        config: &Config,
        provider: &str,
        model: &str,
        outcome: &ChatOutcome,
        effective_context: u64,
        waited: Duration,
    ) {
        let (p, m) = provider_model(config, provider, model);
        let series = self.series(&p, &m);
        let usage = match outcome {
            ChatOutcome::Complete(r) => r.usage.as_ref(),
            ChatOutcome::Verbatim(v) => Some(&v.usage),
            // A native answer's usage is in the client's own format: only its timing is seen.
            ChatOutcome::Native(crate::providers::passthrough::NativeOutcome::Complete(_)) => None,
            ChatOutcome::Stream(_)
            | ChatOutcome::Native(crate::providers::passthrough::NativeOutcome::Stream(_)) => {
                series.ttft.observe(waited.as_secs_f64());
                None
            }
        };
        series.count_tokens(usage, Some(effective_context));
        note(|r| {
            r.provider = Some(provider.to_string());
            r.model = Some(model.to_string());
            r.provider_label = Some(p);
            r.model_label = Some(m);
            r.upstream_wait += waited;
            r.effective_context = Some(effective_context);
            if let Some(u) = usage {
                r.usage(u);
            }
        });
    }

    /// What a committed stream records when it ends, labels resolved up front (the stream
    /// outlives the borrow of the configuration).
    pub fn meter(self: &Arc<Self>, config: &Config, provider: &str, model: &str) -> StreamMeter {
        let (provider, model) = provider_model(config, provider, model);
        StreamMeter {
            metrics: self.clone(),
            series: self.series(&provider, &model),
            provider,
        }
    }

    /// The series of label pair `p`/`m`, created on first use. Label values are config names
    /// or `other` (see `provider_model`), so the map is bounded by the configuration.
    fn series(&self, p: &str, m: &str) -> Arc<ModelSeries> {
        if let Some(s) = self.by_model.read().get(p).and_then(|ms| ms.get(m)) {
            return s.clone();
        }
        let token = |kind| {
            self.tokens
                .get_or_create(&TokenLabels {
                    provider: p.to_string(),
                    model: m.to_string(),
                    kind,
                })
                .clone()
        };
        let series = Arc::new(ModelSeries {
            ttft: self
                .ttft
                .get_or_create(&ProviderModel {
                    provider: p.to_string(),
                    model: m.to_string(),
                })
                .clone(),
            prompt: token("prompt"),
            completion: token("completion"),
            effective_context: token("effective_context"),
        });
        self.by_model
            .write()
            .entry(p.to_string())
            .or_default()
            .entry(m.to_string())
            .or_insert(series)
            .clone()
    }

    /// An upstream call failed before its answer. Until another one serves, the access log
    /// names the one that failed.
    pub fn upstream_failure(
        &self,
        config: &Config,
        provider: &str,
        model: &str,
        e: &ProviderError,
    ) {
        note(|r| {
            if r.provider_label.is_none() {
                r.provider = Some(provider.to_string());
                r.model = Some(model.to_string());
            }
        });
        let provider = if config.providers.contains_key(provider) {
            provider.to_string()
        } else {
            OTHER.into()
        };
        self.count_failure(provider, e);
    }

    fn count_failure(&self, provider: String, e: &ProviderError) {
        self.failures
            .get_or_create(&FailureLabels {
                provider,
                reason: failure_reason(e),
            })
            .inc();
    }

    /// Rotation `name` gave up a candidate and tries the next one.
    pub fn failover(&self, config: &Config, name: &str) {
        let rotation = if config.rotations.contains_key(name) {
            name.to_string()
        } else {
            OTHER.into()
        };
        self.failovers
            .get_or_create(&RotationLabel { rotation })
            .inc();
    }

    /// One condensation method ran on a context of `before` tokens: outcome `condensed`,
    /// `no_gain`, `nothing` (nothing old enough) or `failed`.
    pub fn condensation<T>(
        &self,
        method: CondenseMethod,
        result: &Result<(T, u64), CondenseError>,
        before: u64,
    ) {
        let outcome = match result {
            Ok((_, after)) if *after < before => "condensed",
            Ok(_) => "no_gain",
            Err(CondenseError::NothingToCondense) => "nothing",
            Err(_) => "failed",
        };
        self.condensations
            .get_or_create(&CondenseLabels {
                method: method_label(method),
                outcome,
            })
            .inc();
    }

    /// Autoselect `name` routed to `choice` (an `available_models` id or its fallback).
    pub fn autoselect(&self, config: &Config, name: &str, choice: &str) {
        let Some(cfg) = config.autoselect.get(name) else {
            return;
        };
        let known = cfg.fallback.as_deref() == Some(choice)
            || cfg.available_models.iter().any(|m| m.model_id == choice);
        self.autoselect
            .get_or_create(&AutoselectLabels {
                autoselect: name.to_string(),
                choice: if known { choice.into() } else { OTHER.into() },
            })
            .inc();
    }
}

impl ModelSeries {
    /// Counts only what is known and not zero (a zero would only add a series line).
    fn count_tokens(&self, usage: Option<&Usage>, effective: Option<u64>) {
        let kinds = [
            (&self.prompt, usage.map(|u| u.prompt_tokens)),
            (&self.completion, usage.map(|u| u.completion_tokens)),
            (&self.effective_context, effective),
        ];
        for (counter, n) in kinds {
            if let Some(n) = n.filter(|n| *n > 0) {
                counter.inc_by(n);
            }
        }
    }
}

/// A committed stream's end, for its tokens and a failure after the 200.
pub struct StreamMeter {
    metrics: Arc<Metrics>,
    series: Arc<ModelSeries>,
    provider: String,
}

impl StreamMeter {
    pub fn ended(&self, usage: Option<&Usage>) {
        if let Some(u) = usage {
            self.series.count_tokens(Some(u), None);
            note(|r| r.usage(u));
        }
    }

    pub fn failed(&self, e: &ProviderError) {
        self.metrics.count_failure(self.provider.clone(), e);
    }
}

/// What one request did, filled in by the routing hooks as it goes, read when its response
/// has ended (for `aisbf_requests_total` and the access-log line).
#[derive(Debug, Default)]
pub struct Record {
    pub target_label: Option<String>,
    /// The provider and model that served (or, when none did, the last that failed), as
    /// named in the request; for the access log.
    pub provider: Option<String>,
    pub model: Option<String>,
    /// Label values of the provider and model that served; `None` until one did.
    pub provider_label: Option<String>,
    pub model_label: Option<String>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub effective_context: Option<u64>,
    /// Time spent waiting for upstream answers (every attempt), for the overhead histogram.
    pub upstream_wait: Duration,
}

impl Record {
    fn usage(&mut self, u: &Usage) {
        self.prompt_tokens = Some(u.prompt_tokens);
        self.completion_tokens = Some(u.completion_tokens);
    }
}

pub type SharedRecord = Arc<Mutex<Record>>;

tokio::task_local! {
    /// The record of the request this task is serving; set by the server around the handler
    /// and around each poll of the response body, so hooks deep in routing need no argument.
    pub static CURRENT: SharedRecord;
}

/// Updates the current request's record; outside a request (a unit test) does nothing.
fn note(f: impl FnOnce(&mut Record)) {
    let _ = CURRENT.try_with(|r| f(&mut r.lock()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let dir = tempfile::tempdir().unwrap();
        crate::config::ensure_defaults(dir.path()).unwrap();
        crate::config::load(dir.path()).unwrap()
    }

    #[test]
    fn names_the_config_does_not_know_are_other() {
        let c = config();
        let (id, p) = c
            .providers
            .iter()
            .find(|(_, p)| !p.models.is_empty())
            .unwrap();
        let model = p.models[0].name.clone();
        assert_eq!(provider_model(&c, id, &model), (id.clone(), model.clone()));
        assert_eq!(
            provider_model(&c, id, "made-up-model"),
            (id.clone(), OTHER.to_string())
        );
        assert_eq!(
            provider_model(&c, "nope", &model),
            (OTHER.to_string(), OTHER.to_string())
        );
        let t = Target::Provider {
            provider: id.clone(),
            model: "x".into(),
        };
        assert_eq!(target_label(&c, &t), format!("{id}/other"));
        assert_eq!(target_label(&c, &Target::Rotation("zzz".into())), OTHER);
    }
}
