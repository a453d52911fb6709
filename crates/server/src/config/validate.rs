//! What a well-formed file can still get wrong: ids, references, names, SQL, the API's
//! protection.

use std::collections::HashSet;

use surefoot_query::{QueryError, check_language};
use surefoot_source_postgres::{Identifier, SlotName, TableName};

use super::model::{Config, HttpSource, ReactionConfig, SourceConfig};
use super::problems::Problems;

/// Adds to `problems` everything wrong with `config`'s meaning.
pub(crate) fn validate(config: &Config, problems: &mut Problems) {
    let sources = unique_ids(
        "sources",
        config.sources.iter().map(SourceConfig::id),
        problems,
    );
    let queries = unique_ids(
        "queries",
        config.queries.iter().map(|q| q.id.as_str()),
        problems,
    );
    unique_ids(
        "reactions",
        config.reactions.iter().map(ReactionConfig::id),
        problems,
    );
    for (index, query) in config.queries.iter().enumerate() {
        if sources.contains(query.id.as_str()) {
            problems.push(&format!("queries[{index}].id"), "is also a source's id");
        }
    }
    for (index, source) in config.sources.iter().enumerate() {
        validate_source(source, &format!("sources[{index}]"), problems);
    }
    for (index, query) in config.queries.iter().enumerate() {
        let path = format!("queries[{index}]");
        if let Err(error) = check_language(&query.sql) {
            problems.push(&format!("{path}.sql"), describe(&error));
        }
        for (n, source) in query.sources.iter().enumerate() {
            if !sources.contains(source.as_str()) {
                problems.push(
                    &format!("{path}.sources[{n}]"),
                    format!("no source `{source}`"),
                );
            }
        }
    }
    for (index, reaction) in config.reactions.iter().enumerate() {
        let path = format!("reactions[{index}]");
        let from = reaction.from();
        if !sources.contains(from) && !queries.contains(from) {
            problems.push(
                &format!("{path}.from"),
                format!("no query or source `{from}`"),
            );
        }
        validate_reaction(reaction, &path, problems);
    }
    validate_api(config, problems);
    if tracing_subscriber::EnvFilter::try_new(&config.logging.level).is_err() {
        problems.push(
            "logging.level",
            format!("`{}` is not a log filter", config.logging.level),
        );
    }
}

fn validate_reaction(reaction: &ReactionConfig, path: &str, problems: &mut Problems) {
    let url_must = |prefixes: &[&str], url: &str, problems: &mut Problems| {
        if !prefixes.iter().any(|prefix| url.starts_with(prefix)) {
            problems.push(
                &format!("{path}.url"),
                format!("must start with {}", prefixes.join(" or ")),
            );
        }
    };
    match reaction {
        ReactionConfig::Postgres(writer) => {
            url_must(
                &["postgres://", "postgresql://"],
                writer.url.expose(),
                problems,
            );
            if writer.max_rows == 0 {
                problems.push(&format!("{path}.max_rows"), "must be more than 0");
            }
        }
        ReactionConfig::Redis(redis) => {
            url_must(&["redis://", "rediss://"], redis.url.expose(), problems);
            if redis.stream.as_deref().is_some_and(str::is_empty) {
                problems.push(&format!("{path}.stream"), "must not be empty");
            }
        }
        ReactionConfig::Webhook(webhook) => {
            url_must(&["http://", "https://"], webhook.url.expose(), problems);
            if webhook.timeout_ms == 0 {
                problems.push(&format!("{path}.timeout_ms"), "must be more than 0");
            }
        }
        ReactionConfig::Log(_) => {}
    }
}

/// A query error as `line L, column C: what`.
fn describe(error: &QueryError) -> String {
    match error {
        QueryError::Unsupported { construct, at } => {
            format!("{at}: {construct} is not supported in a continuous query")
        }
        QueryError::Invalid { message, at } => format!("{at}: {message}"),
        QueryError::Syntax { source } => format!("not valid SQL: {source}"),
    }
}

fn unique_ids<'a>(
    list: &str,
    ids: impl Iterator<Item = &'a str>,
    problems: &mut Problems,
) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    for (index, id) in ids.enumerate() {
        let path = format!("{list}[{index}].id");
        if id.trim().is_empty() {
            problems.push(&path, "must not be empty");
        } else if !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            problems.push(&path, "may hold only letters, digits, `_` and `-`");
        } else if !seen.insert(id) {
            problems.push(&path, format!("`{id}` is used twice"));
        }
    }
    seen
}

fn validate_source(source: &SourceConfig, path: &str, problems: &mut Problems) {
    let pg = match source {
        SourceConfig::Postgres(pg) => pg,
        SourceConfig::Http(http) => return validate_http(http, path, problems),
    };
    if pg.port == 0 {
        problems.push(&format!("{path}.port"), "must not be 0");
    }
    for (field, value) in [
        ("user", &pg.user),
        ("database", &pg.database),
        ("host", &pg.host),
    ] {
        if value.trim().is_empty() {
            problems.push(&format!("{path}.{field}"), "must not be empty");
        }
    }
    if let Err(error) = SlotName::parse(&pg.slot_name()) {
        problems.push(&format!("{path}.slot"), error.to_string());
    }
    if let Err(error) = Identifier::parse("publication", &pg.publication_name()) {
        problems.push(&format!("{path}.publication"), error.to_string());
    }
    for (index, table) in pg.tables.iter().enumerate() {
        if let Err(error) = TableName::parse(table) {
            problems.push(&format!("{path}.tables[{index}]"), error.to_string());
        }
    }
}

fn validate_http(http: &HttpSource, path: &str, problems: &mut Problems) {
    if http.allow_unauthenticated {
        if !http.listen.ip().is_loopback() {
            problems.push(
                &format!("{path}.allow_unauthenticated"),
                format!("only on a loopback address, not {}", http.listen.ip()),
            );
        }
    } else if http.tokens.is_empty() {
        problems.push(
            &format!("{path}.tokens"),
            "at least one bearer token is required (or allow_unauthenticated: true on a loopback \
             address)",
        );
    }
    for (index, token) in http.tokens.iter().enumerate() {
        if token.expose().len() < 16 {
            problems.push(
                &format!("{path}.tokens[{index}]"),
                "must be at least 16 characters",
            );
        }
    }
    if http.tables.is_empty() {
        problems.push(&format!("{path}.tables"), "at least one table is required");
    }
    for (index, table) in http.tables.iter().enumerate() {
        let at = format!("{path}.tables[{index}]");
        if let Err(error) = TableName::parse(&table.name) {
            problems.push(&format!("{at}.name"), error.to_string());
        }
        if table.key.is_empty() {
            problems.push(&format!("{at}.key"), "at least one key column is required");
        }
        for (n, key) in table.key.iter().enumerate() {
            if !table.columns.contains(key) {
                problems.push(
                    &format!("{at}.key[{n}]"),
                    format!("`{key}` is not one of the columns"),
                );
            }
        }
    }
}

fn validate_api(config: &Config, problems: &mut Problems) {
    let api = &config.api;
    if api.stall_after_ms == 0 {
        problems.push("api.stall_after_ms", "must be more than 0");
    }
    let Some(listen) = api.listen else { return };
    if api.allow_unauthenticated {
        if !listen.ip().is_loopback() {
            problems.push(
                "api.allow_unauthenticated",
                format!("only on a loopback address, not {}", listen.ip()),
            );
        }
    } else if api.tokens.is_empty() {
        problems.push(
            "api.tokens",
            "at least one bearer token is required (or allow_unauthenticated: true on a loopback \
             address)",
        );
    }
    for (index, token) in api.tokens.iter().enumerate() {
        if token.expose().len() < 16 {
            problems.push(
                &format!("api.tokens[{index}]"),
                "must be at least 16 characters",
            );
        }
    }
}
