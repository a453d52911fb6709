//! Where each source table's changes go, compiled from the configuration.

use std::collections::HashMap;
use std::sync::Arc;

use surefoot_core_model::TableRef;

use crate::config::{ApplyMode, ConfigError, WriterConfig};
use crate::handler::Handler;
use crate::ident::QualifiedName;
use crate::rules::CompiledRule;

/// How one table is applied.
#[derive(Debug, Clone)]
pub(crate) enum RouteMode {
    Mirror {
        key: Vec<String>,
    },
    Append,
    Custom {
        name: String,
        handler: Arc<dyn Handler>,
    },
}

/// One source table's route.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) target: QualifiedName,
    pub(crate) mode: RouteMode,
    pub(crate) publish: Option<String>,
    pub(crate) rules: Vec<CompiledRule>,
}

/// Routes by source table.
pub(crate) type Routes = HashMap<TableRef, Route>;

/// Compiles the routes of a validated configuration; a custom mode naming a handler that is not
/// registered is a configuration problem.
pub(crate) fn compile(
    config: &WriterConfig,
    handlers: &HashMap<String, Arc<dyn Handler>>,
) -> Result<Routes, ConfigError> {
    let mut problems = Vec::new();
    let mut routes = HashMap::new();
    for (index, table) in config.tables.iter().enumerate() {
        let mode = match &table.mode {
            ApplyMode::Mirror { key } => RouteMode::Mirror { key: key.clone() },
            ApplyMode::Append => RouteMode::Append,
            ApplyMode::Custom { handler } => match handlers.get(handler) {
                Some(found) => RouteMode::Custom {
                    name: handler.clone(),
                    handler: Arc::clone(found),
                },
                None => {
                    problems.push(format!(
                        "tables[{index}].mode.handler: no handler named `{handler}` is registered"
                    ));
                    continue;
                }
            },
        };
        let (Ok(target), Ok(rules)) = (
            table.target_name(),
            table
                .rules
                .iter()
                .map(CompiledRule::compile)
                .collect::<Result<Vec<_>, _>>(),
        ) else {
            problems.push(format!(
                "tables[{index}]: invalid (validate the configuration)"
            ));
            continue;
        };
        routes.insert(
            table.source.clone(),
            Route {
                target,
                mode,
                publish: table.publish.clone(),
                rules,
            },
        );
    }
    if problems.is_empty() {
        Ok(routes)
    } else {
        Err(ConfigError { problems })
    }
}

impl Route {
    /// The first rule `row` breaks, as a reason.
    pub(crate) fn violation(&self, row: &surefoot_core_model::Row) -> Option<String> {
        self.rules.iter().find_map(|rule| {
            row.get(rule.column())
                .and_then(|value| rule.check(value).err())
        })
    }
}
