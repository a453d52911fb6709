//! `surefoot run`: plans the pipeline, starts it (reactions and queries before the sources, so
//! nothing is sent before its consumer exists), serves the API, and stops in order on SIGTERM or
//! SIGINT: the sources stop intake and confirm their final watermark, the queries and reactions
//! drain what was taken, the writers flush. A second signal exits at once.

mod added;
mod discover;
mod error;
mod fanout;
mod http_source;
mod late;
mod logging;
mod manager;
mod metrics;
mod on_demand;
mod plan;
mod progress;
mod registry;
mod resnapshot;
mod segment;
mod skip;
mod snapshot;
mod source;
mod state_file;
mod table_snapshot;
mod writers;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use surefoot_core_lifecycle::TaskGroup;
use surefoot_core_lifecycle::signal::shutdown_signal;

pub use error::RunError;
pub use manager::{Manager, Refusal};
pub use metrics::Metrics;
pub use registry::{ComponentView, Kind, Registry, State};
pub(crate) use segment::Command;
pub use segment::{Hold, Holds};
pub use writers::Writers;

use crate::api::{self, ApiState};
use crate::config::Config;

/// How long each stage of a stop may take.
const STOP_DEADLINE: Duration = Duration::from_secs(30);
/// Exit status after a second signal.
const INTERRUPTED: u8 = 130;

/// Runs `config` until a signal; the process's exit status.
pub fn main(config: Config) -> ExitCode {
    logging::init(&config.logging);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!(%error, "surefoot stopped");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<ExitCode, RunError> {
    let signals = shutdown_signal().map_err(|e| RunError::State(error::chain(&e)))?;
    tokio::pin!(signals);
    let (metrics, provider) = Metrics::install()?;
    clear_runtime_state(&config.state_dir)?;
    let registry = Registry::new(Duration::from_millis(config.api.stall_after_ms));
    let writers = Writers::default();
    let holds = Holds::default();
    let work = TaskGroup::new("pipeline");
    let pipeline = tokio::select! {
        planned = plan::plan(&config, &registry, &writers, &holds, &work, STOP_DEADLINE) => planned?,
        signal = &mut signals => {
            tracing::info!(?signal, "stopped before the pipeline started");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let api_group = TaskGroup::new("api");
    let sources = TaskGroup::new("sources");
    let (tables, libraries) = (pipeline.tables.clone(), pipeline.libraries.clone());
    let segments = pipeline.commands.clone();
    let source_commands = pipeline.source_commands.clone();
    let fan_outs = spawn(&work, &sources, pipeline)?;
    let manager = Manager::new(manager::ManagerParts {
        config: config.clone(),
        tables,
        libraries,
        segments,
        fan_outs,
        source_commands,
        registry: registry.clone(),
        writers: writers.clone(),
        holds,
        work: work.clone(),
        sources: sources.clone(),
        stop_deadline: STOP_DEADLINE,
    });
    let state = ApiState {
        registry: registry.clone(),
        writers: writers.clone(),
        metrics: config.metrics.enabled.then_some(metrics),
        manager,
        tokens: Arc::new(config.api.tokens.clone()),
    };
    if let Some(listen) = config.api.listen {
        api::serve(listen, state, &api_group).await?;
    }
    tracing::info!(
        sources = config.sources.len(),
        queries = config.queries.len(),
        reactions = config.reactions.len(),
        "surefoot running"
    );
    let signal = (&mut signals).await;
    tracing::info!(
        ?signal,
        "stopping: sources first, then queries and reactions drain"
    );
    let second = shutdown_signal().map_err(|e| RunError::State(error::chain(&e)))?;
    let stopping = async {
        let stopped_sources = sources.stop(STOP_DEADLINE).await;
        let drained = work.stop(STOP_DEADLINE).await;
        let api = api_group.stop(STOP_DEADLINE).await;
        let flushed = provider.shutdown();
        if let Err(error) = flushed {
            tracing::warn!(%error, "metrics provider did not shut down cleanly");
        }
        stopped_sources.is_clean() && drained.is_clean() && api.is_clean()
    };
    tokio::select! {
        clean = stopping => {
            if clean {
                tracing::info!("surefoot stopped cleanly");
                Ok(ExitCode::SUCCESS)
            } else {
                tracing::error!("surefoot stopped, but not cleanly: see the errors above");
                Ok(ExitCode::FAILURE)
            }
        }
        signal = second => {
            tracing::warn!(?signal, "second signal: exiting at once");
            Ok(ExitCode::from(INTERRUPTED))
        }
    }
}

/// Spawns the segments, the fan-outs and the sources; returns where to send each fan-out
/// commands.
fn spawn(
    work: &TaskGroup,
    sources: &TaskGroup,
    pipeline: plan::Pipeline,
) -> Result<
    std::collections::BTreeMap<String, tokio::sync::mpsc::Sender<fanout::FanOutCommand>>,
    RunError,
> {
    let spawn_error = |e: surefoot_core_lifecycle::SpawnError| RunError::State(error::chain(&e));
    for segment in pipeline.segments {
        let name = match &segment.query {
            Some(query) => format!("query-{}", query.id),
            None => format!(
                "reactions-of-{}",
                segment.reactions.first().map_or("", |r| r.id())
            ),
        };
        work.spawn(name, |cancel| segment.run(cancel))
            .map_err(spawn_error)?;
    }
    let mut fan_out_commands = std::collections::BTreeMap::new();
    for (source, input, consumers, skips) in pipeline.fan_outs {
        let (commands, commands_in) = tokio::sync::mpsc::channel(8);
        fan_out_commands.insert(source.clone(), commands);
        let fan_out = fanout::FanOut {
            source: source.clone(),
            consumers,
            commands: commands_in,
            skips,
            registry: pipeline.registry.clone(),
        };
        work.spawn(format!("fan-out-{source}"), move |_| fan_out.run(input))
            .map_err(spawn_error)?;
    }
    for task in pipeline.http_sources {
        let name = format!("source-{}", task.config.id);
        sources
            .spawn(name, |cancel| task.run(cancel))
            .map_err(spawn_error)?;
    }
    for task in pipeline.sources {
        let name = format!("source-{}", task.config.id);
        sources
            .spawn(name, |cancel| task.run(cancel))
            .map_err(spawn_error)?;
    }
    Ok(fan_out_commands)
}

/// Components created through the API last until the process stops: their state goes.
fn clear_runtime_state(state_dir: &std::path::Path) -> Result<(), RunError> {
    let dir = manager::runtime_dir(state_dir);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {
            tracing::info!(dir = %dir.display(), "cleared the state of components created at runtime");
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(RunError::State(format!("{}: {error}", dir.display()))),
    }
}
