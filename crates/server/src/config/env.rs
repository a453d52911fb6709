//! `${NAME}` and `${NAME:-default}` in the file's string values, from the environment.

/// What a substitution can get wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EnvError {
    /// `${NAME}` with `NAME` unset and no default.
    Unset(String),
    /// A `${` without its `}`, or an empty name.
    Malformed,
}

impl std::fmt::Display for EnvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvError::Unset(name) => write!(
                f,
                "environment variable {name} is not set (write ${{{name}:-default}} for a default)"
            ),
            EnvError::Malformed => f.write_str("`${` without a closing `}` or with an empty name"),
        }
    }
}

/// `text` with every `${NAME}` / `${NAME:-default}` replaced through `lookup`, and `$$` as a
/// literal `$`. Values that came from the environment are pushed to `substituted`, so that
/// messages can redact them.
pub(crate) fn substitute(
    text: &str,
    lookup: &impl Fn(&str) -> Option<String>,
    substituted: &mut Vec<String>,
) -> Result<String, EnvError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or(EnvError::Malformed)?;
            let (name, default) = match body[..end].split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (&body[..end], None),
            };
            if name.is_empty() {
                return Err(EnvError::Malformed);
            }
            match (lookup(name), default) {
                (Some(value), _) => {
                    out.push_str(&value);
                    substituted.push(value);
                }
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(EnvError::Unset(name.to_owned())),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Result<String, EnvError> {
        let lookup = |name: &str| (name == "SET").then(|| "value".to_owned());
        substitute(text, &lookup, &mut Vec::new())
    }

    #[test]
    fn names_defaults_and_escapes() {
        assert_eq!(run("a ${SET} b").unwrap(), "a value b");
        assert_eq!(run("${UNSET:-dflt}").unwrap(), "dflt");
        assert_eq!(run("${SET:-dflt}").unwrap(), "value");
        assert_eq!(run("${UNSET:-}").unwrap(), "");
        assert_eq!(run("cost $$5 and $x").unwrap(), "cost $5 and $x");
        assert_eq!(run("${UNSET}"), Err(EnvError::Unset("UNSET".into())));
        assert_eq!(run("${SET"), Err(EnvError::Malformed));
        assert_eq!(run("${}"), Err(EnvError::Malformed));
    }
}
