//! `surefoot`: run, check or describe a pipeline configured in YAML.
#![allow(clippy::print_stdout, clippy::print_stderr)] // A command-line tool reports on its streams.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status of a configuration with problems.
const INVALID_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "surefoot",
    about = "Change-data pipelines that do not lose data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipeline of a configuration file until SIGTERM or SIGINT.
    Run {
        /// The configuration file.
        #[arg(short, long, default_value = "surefoot.yaml")]
        config: PathBuf,
    },
    /// Check a configuration file: every problem with its path; exit status 2 if any.
    Check {
        /// The configuration file.
        #[arg(short, long, default_value = "surefoot.yaml")]
        config: PathBuf,
    },
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("surefoot {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check { config } => match surefoot_server::config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(problems) => {
                report(&config, &problems);
                ExitCode::from(INVALID_CONFIG)
            }
        },
        Command::Run { config: path } => match surefoot_server::config::load(&path) {
            Ok(config) => surefoot_server::run::main(config),
            Err(problems) => {
                report(&path, &problems);
                ExitCode::from(INVALID_CONFIG)
            }
        },
    }
}

fn report(path: &std::path::Path, problems: &surefoot_server::config::Problems) {
    let list = problems.list();
    eprintln!("{}: {} problem(s)", path.display(), list.len());
    for problem in list {
        eprintln!("  {problem}");
    }
}
