//! `surefoot check` on broken configurations: every problem reported with its path, exit
//! status 2, no panic, and no secret in the output. The shipped examples pass.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

const PASSWORD: &str = "pw-Zx81Kq0Lm2";
const TOKEN: &str = "tok-0a1b2c3d4e5f6a7b8c";

/// A valid file, each broken case replaces parts of it.
const VALID: &str = r#"
sources:
  - kind: postgres
    id: shop
    user: replicator
    password: "pw-Zx81Kq0Lm2"
    database: shop
queries:
  - id: totals
    sql: SELECT customer, count(*) AS n FROM orders GROUP BY customer
reactions:
  - kind: postgres
    id: mirror
    from: totals
    url: postgres://u:pw-Zx81Kq0Lm2@127.0.0.1/target
api:
  tokens: ["tok-0a1b2c3d4e5f6a7b8c"]
"#;

fn check(text: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("surefoot.yaml");
    std::fs::write(&path, text).unwrap();
    check_file(&path, env)
}

fn check_file(path: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_surefoot"));
    command.args(["check", "-c"]).arg(path);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

/// `VALID` with `from` replaced by `to` (which must occur).
fn with(from: &str, to: &str) -> String {
    assert!(VALID.contains(from), "{from}");
    VALID.replacen(from, to, 1)
}

/// Each case: the file and the `path: message` fragments its report must hold.
fn cases() -> Vec<(String, Vec<&'static str>)> {
    vec![
        ("sources: [".to_owned(), vec!["not valid YAML"]),
        (
            "- just\n- a list\n".to_owned(),
            vec!["the file must be a mapping"],
        ),
        (
            with("kind: postgres\n    id: shop", "kind: kafka\n    id: shop"),
            vec!["sources[0].kind: unknown source kind `kafka`"],
        ),
        (
            with("  - kind: postgres\n    id: shop", "  - id: shop"),
            vec!["sources[0].kind: is required"],
        ),
        (
            with(
                "    database: shop\n",
                "    database: shop\n    colour: blue\n",
            ),
            vec!["sources[0].colour: unknown field `colour`"],
        ),
        (
            with("    database: shop\n", ""),
            vec!["sources[0]: missing field `database`"],
        ),
        (
            with(
                "    database: shop\n",
                "    database: shop\n    port: many\n",
            ),
            vec!["sources[0].port: `many` is not a number"],
        ),
        (
            with("    database: shop\n", "    database: shop\n    port: 0\n"),
            vec!["sources[0].port: must not be 0"],
        ),
        (
            with(
                "    database: shop\n",
                "    database: shop\n    slot: Bad-Slot\n",
            ),
            vec!["sources[0].slot:"],
        ),
        (
            with(
                "    database: shop\n",
                "    database: shop\n    tables: [\"a.b.c\\u0000\"]\n",
            ),
            vec!["sources[0].tables[0]:"],
        ),
        (
            with("    id: shop", "    id: \"shop!\""),
            vec!["sources[0].id: may hold only"],
        ),
        (
            with(
                "    sql: SELECT customer, count(*) AS n FROM orders GROUP BY customer",
                "    sql: SELECT customer, rank() OVER (ORDER BY customer) FROM orders",
            ),
            vec!["queries[0].sql: line 1, column 18: a window function (OVER) is not supported"],
        ),
        (
            with("GROUP BY customer", "GROUP BY customer ORDER BY customer"),
            vec!["queries[0].sql: line 1", "ORDER BY"],
        ),
        (
            with("GROUP BY customer", "GROUP BY customer LIMIT 5"),
            vec!["queries[0].sql: line 1", "LIMIT"],
        ),
        (
            with(
                "FROM orders GROUP BY customer",
                "FROM orders WHERE customer IN (SELECT id FROM c) GROUP BY customer",
            ),
            vec!["queries[0].sql: line 1", "subquer"],
        ),
        (
            with(
                "FROM orders GROUP BY customer",
                "FROM orders o JOIN c ON o.customer < c.id GROUP BY customer",
            ),
            vec!["queries[0].sql: line 1"],
        ),
        (
            with(
                "    sql: SELECT customer, count(*) AS n FROM orders GROUP BY customer",
                "    sql: SELEC customer FROM orders",
            ),
            vec!["queries[0].sql: not valid SQL"],
        ),
        (
            with(
                "    sql: SELECT customer, count(*) AS n FROM orders GROUP BY customer",
                "    sql: SELECT * FROM orders",
            ),
            vec!["queries[0].sql: line 1", "SELECT *"],
        ),
        (
            with(
                "  - id: totals\n",
                "  - id: totals\n    sources: [nowhere]\n",
            ),
            vec!["queries[0].sources[0]: no source `nowhere`"],
        ),
        (
            with("  - id: totals\n", "  - id: shop\n"),
            vec![
                "queries[0].id: is also a source's id",
                "reactions[0].from: no query or source `totals`",
            ],
        ),
        (
            with(
                "  - id: totals\n    sql:",
                "  - id: totals\n    sq: x\n    sql:",
            ),
            vec!["queries[0].sq: unknown field `sq`"],
        ),
        (
            with("    from: totals\n", "    from: elsewhere\n"),
            vec!["reactions[0].from: no query or source `elsewhere`"],
        ),
        (
            with(
                "    url: postgres://u:pw-Zx81Kq0Lm2@127.0.0.1/target",
                "    url: mysql://u:pw-Zx81Kq0Lm2@127.0.0.1/target",
            ),
            vec!["reactions[0].url: must start with postgres://"],
        ),
        (
            with(
                "  - kind: postgres\n    id: mirror",
                "  - kind: kafka\n    id: mirror",
            ),
            vec!["reactions[0].kind: unknown reaction kind `kafka`"],
        ),
        (
            with("    from: totals\n", "    from: totals\n    max_rows: 0\n"),
            vec!["reactions[0].max_rows: must be more than 0"],
        ),
        (
            with("  tokens: [\"tok-0a1b2c3d4e5f6a7b8c\"]", "  tokens: []"),
            vec!["api.tokens: at least one bearer token"],
        ),
        (
            with(
                "  tokens: [\"tok-0a1b2c3d4e5f6a7b8c\"]",
                "  tokens: [short]",
            ),
            vec!["api.tokens[0]: must be at least 16"],
        ),
        (
            with(
                "  tokens: [\"tok-0a1b2c3d4e5f6a7b8c\"]",
                "  listen: 0.0.0.0:7878\n  allow_unauthenticated: true",
            ),
            vec!["api.allow_unauthenticated: only on a loopback address"],
        ),
        (
            with("api:", "logging:\n  format: xml\napi:"),
            vec!["logging.format:"],
        ),
        (
            with(
                "    password: \"pw-Zx81Kq0Lm2\"",
                "    password: ${UNSET_PASSWORD_VAR}",
            ),
            vec!["sources[0].password: environment variable UNSET_PASSWORD_VAR is not set"],
        ),
        (
            with("    password: \"pw-Zx81Kq0Lm2\"", "    password: ${BROKEN"),
            vec!["sources[0].password: `${` without a closing"],
        ),
        (
            with("sources:", "extra_section: 1\nsources:"),
            vec!["unknown field `extra_section`"],
        ),
        (
            with(
                "GROUP BY customer\n",
                "GROUP BY customer\n  - id: totals\n    sql: SELECT id FROM orders\n",
            ),
            vec!["queries[1].id: `totals` is used twice"],
        ),
        (
            with(
                "    from: totals\n    url: postgres://u:pw-Zx81Kq0Lm2@127.0.0.1/target",
                "    from: totals\n    url: postgres://u:pw-Zx81Kq0Lm2@127.0.0.1/target\n  - kind: redis\n    id: stream\n    from: totals\n    url: http://127.0.0.1:6379",
            ),
            vec!["reactions[1].url: must start with redis:// or rediss://"],
        ),
        (
            with(
                "    from: totals\n    url: postgres://u:pw-Zx81Kq0Lm2@127.0.0.1/target",
                "    from: totals\n    url: postgres://u:pw-Zx81Kq0Lm2@127.0.0.1/target\n  - kind: webhook\n    id: hook\n    from: totals\n    url: ftp://example.com/x\n    timeout_ms: 0",
            ),
            vec![
                "reactions[1].url: must start with http:// or https://",
                "reactions[1].timeout_ms: must be more than 0",
            ],
        ),
        (
            with(
                "sources:\n",
                "sources:\n  - kind: http\n    id: web\n    listen: 0.0.0.0:8081\n    allow_unauthenticated: true\n    tables:\n      - name: clicks\n        columns: [id]\n        key: [uid]\n",
            ),
            vec![
                "sources[0].allow_unauthenticated: only on a loopback address",
                "sources[0].tables[0].key[0]: `uid` is not one of the columns",
            ],
        ),
        (
            with(
                "sources:\n",
                "sources:\n  - kind: http\n    id: web\n    listen: nowhere\n    tables: []\n",
            ),
            vec!["sources[0].listen: invalid socket address"],
        ),
        // Several problems at once: every one reported.
        (
            with("    database: shop\n", "    database: shop\n    port: 0\n")
                .replacen("    from: totals\n", "    from: nowhere\n", 1)
                .replacen("GROUP BY customer", "GROUP BY customer LIMIT 1", 1),
            vec!["sources[0].port", "queries[0].sql", "reactions[0].from"],
        ),
    ]
}

#[test]
fn broken_configurations_report_every_problem_with_its_path_and_exit_2() {
    let cases = cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    for (index, (text, expected)) in cases.iter().enumerate() {
        let (code, output) = check(text, &[]);
        assert_eq!(code, 2, "case {index}: exit {code}\n{text}\n{output}");
        assert!(
            !output.contains("panicked"),
            "case {index} panicked:\n{output}"
        );
        for fragment in expected {
            assert!(
                output.contains(fragment),
                "case {index}: `{fragment}` not in:\n{output}"
            );
        }
        assert!(
            !output.contains(PASSWORD),
            "case {index}: the password shows:\n{output}"
        );
        assert!(
            !output.contains(TOKEN),
            "case {index}: the token shows:\n{output}"
        );
    }
}

#[test]
fn a_secret_in_the_wrong_place_is_redacted_from_the_message() {
    // The password's value lands where a number goes: the parser's message would quote it.
    let text = with(
        "    database: shop\n",
        "    database: shop\n    port: ${SHOP_SECRET}\n",
    );
    let (code, output) = check(&text, &[("SHOP_SECRET", "s3cr3t-value-991")]);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("sources[0].port"), "{output}");
    assert!(!output.contains("s3cr3t-value-991"), "{output}");
    // A literal password given as a number is quoted by the parser too.
    let text = with("    password: \"pw-Zx81Kq0Lm2\"", "    password: 99887766");
    let (code, output) = check(&text, &[]);
    assert_eq!(code, 2, "{output}");
    assert!(!output.contains("99887766"), "{output}");
}

#[test]
fn the_valid_file_and_every_shipped_example_pass() {
    let (code, output) = check(VALID, &[]);
    assert_eq!(code, 0, "{output}");
    // Numbers and booleans from the environment are read as what they spell.
    let from_env = with(
        "    database: shop\n",
        "    database: shop\n    port: ${SHOP_PORT}\n    bootstrap: ${SHOP_BOOTSTRAP:-false}\n",
    );
    let (code, output) = check(&from_env, &[("SHOP_PORT", "5433")]);
    assert_eq!(code, 0, "{output}");
    let env = [
        ("SHOP_PASSWORD", "x"),
        ("TARGET_URL", "postgres://u@127.0.0.1/target"),
        ("SUREFOOT_API_TOKEN", "0123456789abcdef0123"),
        ("BILLING_PASSWORD", "y"),
        ("REPLICA_URL", "postgres://u@127.0.0.1/replica"),
        ("WEB_INGEST_TOKEN", "0123456789abcdef0123"),
        ("DEMO_STATE_DIR", "/tmp/demo"),
        ("DEMO_SOURCE_PORT", "5433"),
        ("DEMO_TARGET_URL", "postgres://u@127.0.0.1:5434/target"),
        ("DEMO_REDIS_URL", "redis://127.0.0.1:6380"),
        ("DEMO_API_TOKEN", "0123456789abcdef0123"),
    ];
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let (code, output) = check_file(&path, &env);
            assert_eq!(code, 0, "{}: {output}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 3, "{checked} examples");
}

#[test]
fn version_prints_the_package_version() {
    let output = Command::new(env!("CARGO_BIN_EXE_surefoot"))
        .arg("version")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
}
