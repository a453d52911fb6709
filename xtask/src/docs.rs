//! `cargo xtask docs`: the API docs of every crate with rustdoc's warnings denied, so a broken or
//! private intra-doc link, a bad code-block attribute or invalid HTML fails, with every feature
//! on as docs.rs builds them (`[package.metadata.docs.rs] all-features = true`).

use crate::cmd::{command, execute};

pub(crate) fn run() -> Result<(), String> {
    let mut doc = command(
        "cargo",
        &[
            "doc",
            "--no-deps",
            "--workspace",
            "--all-features",
            "--locked",
        ],
    );
    let flags = rustdoc_flags();
    eprintln!("xtask: RUSTDOCFLAGS=\"{flags}\"");
    doc.env("RUSTDOCFLAGS", flags);
    execute(doc)
}

/// `-D warnings` added to whatever RUSTDOCFLAGS the caller set.
fn rustdoc_flags() -> String {
    match std::env::var("RUSTDOCFLAGS") {
        Ok(flags) if !flags.trim().is_empty() => format!("{flags} -D warnings"),
        _ => "-D warnings".to_owned(),
    }
}
