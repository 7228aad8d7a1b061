//! The node's model catalog: the built-in `demo`, plus the OpenAI-compatible
//! models the configuration names — the `AI_SERVICE_URLS` shorthand (one
//! pool serving `DEFAULT_MODEL`) and the `MODELS_CONFIG` TOML file. See
//! `docs/models.md` for the file's reference.
//!
//! API keys never appear in the file: an upstream names the environment
//! variable that holds its key (`api_key_env`).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::openai::{ModelSettings, OpenAiProvider, Timeouts};
use super::pool::{PoolSettings, UpstreamSettings};
use super::{DemoProvider, Providers};
use crate::config::Settings;

/// `MODELS_CONFIG`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsFile {
    #[serde(default)]
    pub models: Vec<ModelEntry>,
}

/// `[[models]]`: one model id served by a pool of upstreams. The optional
/// fields override the node-wide `AI_*` settings for this model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub id: String,
    pub upstreams: Vec<UpstreamEntry>,
    pub system_prompt: Option<String>,
    pub history_chars: Option<usize>,
    pub connect_timeout_ms: Option<u64>,
    pub first_token_timeout_ms: Option<u64>,
    pub token_timeout_ms: Option<u64>,
}

/// `[[models.upstreams]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamEntry {
    pub base_url: String,
    /// The model's name on this server (the model's id when absent).
    pub model: Option<String>,
    pub name: Option<String>,
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub continue_prefill: bool,
    pub max_concurrent: Option<usize>,
    #[serde(default)]
    pub params: Map<String, Value>,
    #[serde(default)]
    pub continue_params: Map<String, Value>,
}

/// Body fields chatstream sets itself; `params` may not override them.
const RESERVED_PARAMS: &[&str] = &["model", "messages", "stream", "stream_options"];

impl ModelsFile {
    pub fn parse(text: &str) -> anyhow::Result<ModelsFile> {
        Ok(toml::from_str(text)?)
    }

    pub fn load(path: &Path) -> anyhow::Result<ModelsFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading MODELS_CONFIG {}", path.display()))?;
        ModelsFile::parse(&text)
            .with_context(|| format!("parsing MODELS_CONFIG {}", path.display()))
    }
}

/// A model ready to be built: its settings resolved and checked.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub id: String,
    pub settings: ModelSettings,
    pub upstreams: Vec<UpstreamSettings>,
}

/// Every configured model: the file's, then the `AI_SERVICE_URLS` pool.
/// `env` looks up environment variables (the API keys).
pub fn model_specs(
    settings: &Settings,
    file: &ModelsFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<ModelSpec>> {
    let mut specs = Vec::new();
    for entry in &file.models {
        specs.push(
            model_spec(settings, entry, env).with_context(|| format!("model {:?}", entry.id))?,
        );
    }
    let urls: Vec<&str> = settings
        .ai_service_urls
        .iter()
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
        .collect();
    if !urls.is_empty() {
        let entry = ModelEntry {
            id: settings.default_model.clone(),
            upstreams: urls
                .into_iter()
                .map(|url| UpstreamEntry {
                    base_url: url.to_owned(),
                    model: None,
                    name: None,
                    api_key_env: None,
                    continue_prefill: settings.ai_service_prefill,
                    max_concurrent: None,
                    params: Map::new(),
                    continue_params: Map::new(),
                })
                .collect(),
            system_prompt: None,
            history_chars: None,
            connect_timeout_ms: None,
            first_token_timeout_ms: None,
            token_timeout_ms: None,
        };
        specs.push(model_spec(settings, &entry, env).context("AI_SERVICE_URLS")?);
    }
    let mut ids = BTreeSet::new();
    for spec in &specs {
        ensure!(
            ids.insert(spec.id.as_str()),
            "model {:?} is configured twice (MODELS_CONFIG and AI_SERVICE_URLS both define the default model?)",
            spec.id
        );
    }
    Ok(specs)
}

fn model_spec(
    settings: &Settings,
    entry: &ModelEntry,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<ModelSpec> {
    ensure!(!entry.id.trim().is_empty(), "a model needs an id");
    ensure!(
        !entry.upstreams.is_empty(),
        "a model needs at least one upstream"
    );
    let ms = |own: Option<u64>, node: u64| Duration::from_millis(own.unwrap_or(node));
    let upstreams = entry
        .upstreams
        .iter()
        .map(|u| {
            upstream(settings, &entry.id, u, env)
                .with_context(|| format!("upstream {}", u.base_url))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(ModelSpec {
        id: entry.id.clone(),
        settings: ModelSettings {
            system_prompt: entry.system_prompt.clone(),
            history_chars: entry.history_chars.unwrap_or(settings.ai_history_chars),
            connect_timeout: ms(entry.connect_timeout_ms, settings.ai_connect_timeout_ms),
            timeouts: Timeouts {
                first_token: ms(
                    entry.first_token_timeout_ms,
                    settings.ai_first_token_timeout_ms,
                ),
                between_tokens: ms(entry.token_timeout_ms, settings.ai_token_timeout_ms),
            },
        },
        upstreams,
    })
}

fn upstream(
    settings: &Settings,
    model_id: &str,
    entry: &UpstreamEntry,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<UpstreamSettings> {
    let base_url = entry.base_url.trim().trim_end_matches('/').to_owned();
    let parsed = reqwest::Url::parse(&base_url).context("base_url is not a URL")?;
    ensure!(
        matches!(parsed.scheme(), "http" | "https"),
        "base_url must be http or https"
    );
    let api_key = match &entry.api_key_env {
        None => None,
        Some(variable) => match env(variable) {
            Some(key) if !key.is_empty() => Some(key),
            _ => bail!("api_key_env names {variable}, which is not set"),
        },
    };
    for key in entry.params.keys().chain(entry.continue_params.keys()) {
        ensure!(
            !RESERVED_PARAMS.contains(&key.as_str()),
            "params may not set {key:?}: chatstream sets it"
        );
    }
    let max_concurrent = entry.max_concurrent.unwrap_or(settings.ai_max_concurrent);
    ensure!(max_concurrent > 0, "max_concurrent must be at least 1");
    Ok(UpstreamSettings {
        name: entry.name.clone().unwrap_or_else(|| base_url.clone()),
        model: entry.model.clone().unwrap_or_else(|| model_id.to_owned()),
        base_url,
        api_key,
        continue_prefill: entry.continue_prefill,
        max_concurrent,
        params: entry.params.clone(),
        continue_params: entry.continue_params.clone(),
    })
}

/// The node's providers: `demo`, and every configured model (a configured
/// model named `demo` takes its place). Starts the pools' health checks, so
/// it needs a tokio runtime.
pub fn providers(
    settings: &Settings,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Providers> {
    let file = match &settings.models_config {
        Some(path) => ModelsFile::load(path)?,
        None => ModelsFile::default(),
    };
    let specs = model_specs(settings, &file, env)?;
    let demo = DemoProvider::new(
        Duration::from_millis(settings.demo_token_delay_ms),
        settings.demo_reply_tokens,
    );
    let mut providers = Providers::new(settings.default_model.clone()).with("demo", Arc::new(demo));
    for spec in specs {
        let pool = PoolSettings {
            health_interval: Duration::from_millis(settings.ai_health_interval_ms),
            cooldown: Duration::from_millis(settings.ai_cooldown_ms),
            allowed_failures: settings.ai_allowed_failures,
            // Waiting for a free slot counts against the first token.
            queue_timeout: spec.settings.timeouts.first_token,
        };
        tracing::info!(model = %spec.id, upstreams = spec.upstreams.len(), "serving model");
        let provider = OpenAiProvider::new(&spec.id, spec.upstreams, pool, spec.settings)
            .with_context(|| format!("building the HTTP client of model {:?}", spec.id))?;
        providers = providers.with(spec.id, Arc::new(provider));
    }
    ensure!(
        providers.get(&settings.default_model).is_some(),
        "DEFAULT_MODEL {:?} is not configured: set AI_SERVICE_URLS or list it in MODELS_CONFIG",
        settings.default_model
    );
    Ok(providers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        let mut settings = Settings::defaults();
        settings.ai_service_urls = Vec::new();
        settings.models_config = None;
        settings.default_model = "demo".into();
        settings
    }

    fn env(name: &str) -> Option<String> {
        (name.ends_with("_KEY")).then(|| format!("key-of-{name}"))
    }

    #[test]
    fn every_example_of_the_documentation_is_a_valid_file() {
        let doc = include_str!("../../docs/models.md");
        let blocks: Vec<&str> = doc
            .split("```toml\n")
            .skip(1)
            .map(|rest| rest.split("```").next().unwrap())
            .collect();
        assert!(blocks.len() >= 6, "the examples were found");
        for block in blocks {
            let file = ModelsFile::parse(block).unwrap_or_else(|e| panic!("{e:#}\n{block}"));
            let specs =
                model_specs(&settings(), &file, &env).unwrap_or_else(|e| panic!("{e:#}\n{block}"));
            assert!(!specs.is_empty());
        }
    }

    #[test]
    fn a_file_resolves_names_keys_and_overrides() {
        let file = ModelsFile::parse(
            r#"
            [[models]]
            id = "m"
            token_timeout_ms = 1234
            [[models.upstreams]]
            base_url = "https://api.example.com/v1/"
            api_key_env = "EXAMPLE_KEY"
            continue_prefill = true
            params = { temperature = 0.1 }
            "#,
        )
        .unwrap();
        let specs = model_specs(&settings(), &file, &env).unwrap();
        let spec = &specs[0];
        assert_eq!(
            spec.settings.timeouts.between_tokens,
            Duration::from_millis(1234)
        );
        assert_eq!(
            spec.settings.timeouts.first_token,
            Duration::from_millis(Settings::defaults().ai_first_token_timeout_ms)
        );
        let upstream = &spec.upstreams[0];
        assert_eq!(upstream.base_url, "https://api.example.com/v1");
        assert_eq!(upstream.name, "https://api.example.com/v1");
        assert_eq!(upstream.model, "m");
        assert_eq!(upstream.api_key.as_deref(), Some("key-of-EXAMPLE_KEY"));
        assert!(upstream.continue_prefill);
        assert_eq!(
            upstream.max_concurrent,
            Settings::defaults().ai_max_concurrent
        );
    }

    #[test]
    fn the_shorthand_serves_the_default_model() {
        let mut settings = settings();
        settings.ai_service_urls = vec![
            "http://w1:8090/v1".into(),
            " http://w2:8090/v1/ ".into(),
            String::new(),
        ];
        settings.ai_service_prefill = true;
        let specs = model_specs(&settings, &ModelsFile::default(), &env).unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].id, "demo");
        let urls: Vec<&str> = specs[0]
            .upstreams
            .iter()
            .map(|u| u.base_url.as_str())
            .collect();
        assert_eq!(urls, ["http://w1:8090/v1", "http://w2:8090/v1"]);
        assert!(
            specs[0]
                .upstreams
                .iter()
                .all(|u| u.continue_prefill && u.model == "demo" && u.api_key.is_none())
        );
    }

    #[test]
    fn mistakes_are_refused_with_a_clear_message() {
        let cases = [
            (
                "[[models]]\nid = \"m\"\nupstreams = []\n",
                "at least one upstream",
            ),
            (
                "[[models]]\nid = \"m\"\n[[models.upstreams]]\nbase_url = \"ftp://x\"\n",
                "http or https",
            ),
            (
                "[[models]]\nid = \"m\"\n[[models.upstreams]]\nbase_url = \"http://x\"\napi_key_env = \"UNSET\"\n",
                "UNSET",
            ),
            (
                "[[models]]\nid = \"m\"\n[[models.upstreams]]\nbase_url = \"http://x\"\nparams = { stream = false }\n",
                "\"stream\"",
            ),
            (
                "[[models]]\nid = \"m\"\n[[models.upstreams]]\nbase_url = \"http://x\"\n[[models]]\nid = \"m\"\n[[models.upstreams]]\nbase_url = \"http://y\"\n",
                "twice",
            ),
        ];
        for (text, expected) in cases {
            let error = ModelsFile::parse(text)
                .and_then(|file| model_specs(&settings(), &file, &env))
                .unwrap_err();
            assert!(
                format!("{error:#}").contains(expected),
                "{error:#} lacks {expected:?}"
            );
        }
        let unknown = ModelsFile::parse("[[models]]\nid = \"m\"\nupstream = []\n").unwrap_err();
        assert!(
            format!("{unknown:#}").contains("unknown field"),
            "{unknown:#}"
        );
    }

    #[test]
    fn the_default_model_must_be_served() {
        let mut settings = settings();
        settings.default_model = "nowhere".into();
        let error = providers(&settings, &env).err().expect("refused");
        assert!(
            error.to_string().contains("DEFAULT_MODEL \"nowhere\""),
            "{error}"
        );
    }
}
