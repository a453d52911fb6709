//! `surefoot.yaml`: its model, reading it with the environment, and checking it whole.

mod env;
mod lenient;
mod load;
mod model;
mod problems;
mod validate;

pub use load::parse;
pub use model::{
    ApiConfig, Config, HttpSource, HttpTable, LogFormat, LogReaction, LoggingConfig, MetricsConfig,
    PostgresReaction, PostgresSource, QueryConfig, ReactionConfig, RedisReaction, SourceConfig,
    WebhookReaction,
};
pub use problems::{Problem, Problems};

/// Reads and parses the file at `path` with the process's environment.
pub fn load(path: &std::path::Path) -> Result<Config, Problems> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            let mut problems = Problems::default();
            problems.push("", format!("cannot read {}: {error}", path.display()));
            return Err(problems);
        }
    };
    parse(&text, &|name| std::env::var(name).ok())
}
