//! Reading a file into a [`Config`], collecting every problem with its path instead of stopping
//! at the first.

use serde::de::DeserializeOwned;
use serde_norway::{Mapping, Value};

use super::env::substitute;
use super::model::{
    Config, HttpSource, LogReaction, PostgresReaction, PostgresSource, QueryConfig, ReactionConfig,
    RedisReaction, Settings, SourceConfig, WebhookReaction,
};
use super::problems::Problems;

/// Keys whose values are secrets wherever they appear: redacted from every message.
const SECRET_KEYS: [&str; 4] = ["password", "url", "tokens", "token"];

/// Parses `text` (YAML), substituting the environment through `lookup`. Returns the config, or
/// every problem found (syntax, shape and meaning, see `super::validate`).
pub fn parse(text: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<Config, Problems> {
    let mut problems = Problems::default();
    let mut root: Value = match serde_norway::from_str(text) {
        Ok(Value::Null) => Value::Mapping(Mapping::new()),
        Ok(value) => value,
        Err(error) => {
            problems.push("", format!("not valid YAML: {error}"));
            return Err(problems);
        }
    };
    collect_secrets(&root, false, &mut problems);
    substitute_tree(&mut root, String::new(), lookup, &mut problems);
    let Value::Mapping(mut top) = root else {
        problems.push("", "the file must be a mapping of sections");
        return Err(problems);
    };
    let sources = take_list(&mut top, "sources", &mut problems);
    let queries = take_list(&mut top, "queries", &mut problems);
    let reactions = take_list(&mut top, "reactions", &mut problems);
    let settings = deserialize::<Settings>(Value::Mapping(top), "", &mut problems);
    let config = Config {
        sources: sources
            .into_iter()
            .filter_map(|(path, item)| source(item, &path, &mut problems))
            .collect(),
        queries: queries
            .into_iter()
            .filter_map(|(path, item)| deserialize::<QueryConfig>(item, &path, &mut problems))
            .collect(),
        reactions: reactions
            .into_iter()
            .filter_map(|(path, item)| reaction(item, &path, &mut problems))
            .collect(),
        state_dir: Default::default(),
        api: Default::default(),
        metrics: Default::default(),
        logging: Default::default(),
    };
    let config = match settings {
        Some(settings) => Config {
            state_dir: settings.state_dir,
            api: settings.api,
            metrics: settings.metrics,
            logging: settings.logging,
            ..config
        },
        None => config,
    };
    super::validate::validate(&config, &mut problems);
    problems.into_result(config)
}

/// The list `name` removed from `top`, each item with its path (`sources[0]`).
fn take_list(top: &mut Mapping, name: &str, problems: &mut Problems) -> Vec<(String, Value)> {
    match top.remove(name) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(items)) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| (format!("{name}[{index}]"), item))
            .collect(),
        Some(_) => {
            problems.push(name, "must be a list");
            Vec::new()
        }
    }
}

fn source(item: Value, path: &str, problems: &mut Problems) -> Option<SourceConfig> {
    let (kind, item) = take_kind(item, path, problems)?;
    match kind.as_str() {
        "postgres" => {
            deserialize::<PostgresSource>(item, path, problems).map(SourceConfig::Postgres)
        }
        "http" => deserialize::<HttpSource>(item, path, problems).map(SourceConfig::Http),
        other => {
            problems.push(
                &format!("{path}.kind"),
                format!("unknown source kind `{other}` (known: postgres, http)"),
            );
            None
        }
    }
}

fn reaction(item: Value, path: &str, problems: &mut Problems) -> Option<ReactionConfig> {
    let (kind, item) = take_kind(item, path, problems)?;
    match kind.as_str() {
        "postgres" => {
            deserialize::<PostgresReaction>(item, path, problems).map(ReactionConfig::Postgres)
        }
        "log" => deserialize::<LogReaction>(item, path, problems).map(ReactionConfig::Log),
        "redis" => deserialize::<RedisReaction>(item, path, problems).map(ReactionConfig::Redis),
        "webhook" => {
            deserialize::<WebhookReaction>(item, path, problems).map(ReactionConfig::Webhook)
        }
        other => {
            problems.push(
                &format!("{path}.kind"),
                format!("unknown reaction kind `{other}` (known: postgres, redis, webhook, log)"),
            );
            None
        }
    }
}

/// The item's `kind` and the item without it.
fn take_kind(item: Value, path: &str, problems: &mut Problems) -> Option<(String, Value)> {
    let Value::Mapping(mut map) = item else {
        problems.push(path, "must be a mapping");
        return None;
    };
    match map.remove("kind") {
        Some(Value::String(kind)) => Some((kind, Value::Mapping(map))),
        Some(_) => {
            problems.push(&format!("{path}.kind"), "must be a string");
            None
        }
        None => {
            problems.push(&format!("{path}.kind"), "is required");
            None
        }
    }
}

/// `item` as a `T`, or a problem at `path` plus the field's own path.
fn deserialize<T: DeserializeOwned>(item: Value, path: &str, problems: &mut Problems) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(item) {
        Ok(value) => Some(value),
        Err(error) => {
            let inner = error.path().to_string();
            let full = match (path.is_empty(), inner == ".") {
                (_, true) => path.to_owned(),
                (true, false) => inner,
                (false, false) => format!("{path}.{inner}"),
            };
            problems.push(&full, error.into_inner().to_string());
            None
        }
    }
}

/// Replaces `${...}` in every string of the tree, reporting each failure at its path.
fn substitute_tree(
    value: &mut Value,
    path: String,
    lookup: &impl Fn(&str) -> Option<String>,
    problems: &mut Problems,
) {
    match value {
        Value::String(text) => {
            let mut substituted = Vec::new();
            match substitute(text, lookup, &mut substituted) {
                Ok(done) => *text = done,
                Err(error) => problems.push(&path, error.to_string()),
            }
            for secret in substituted {
                problems.redact(secret);
            }
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                substitute_tree(item, format!("{path}[{index}]"), lookup, problems);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let key = key.as_str().unwrap_or("?");
                let path = if path.is_empty() {
                    key.to_owned()
                } else {
                    format!("{path}.{key}")
                };
                substitute_tree(item, path, lookup, problems);
            }
        }
        Value::Tagged(tagged) => substitute_tree(&mut tagged.value, path, lookup, problems),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Registers the literal values under secret keys for redaction.
fn collect_secrets(value: &Value, secret: bool, problems: &mut Problems) {
    match value {
        Value::String(text) if secret => problems.redact(text.clone()),
        Value::Number(number) if secret => problems.redact(number.to_string()),
        Value::Sequence(items) => {
            for item in items {
                collect_secrets(item, secret, problems);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map {
                let is_secret = key.as_str().is_some_and(|key| SECRET_KEYS.contains(&key));
                collect_secrets(item, secret || is_secret, problems);
            }
        }
        Value::Tagged(tagged) => collect_secrets(&tagged.value, secret, problems),
        _ => {}
    }
}
