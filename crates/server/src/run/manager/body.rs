//! The bodies of `PUT` requests: a component as the file writes it, checked like the file by
//! parsing it inside a configuration of its own.

use serde_norway::{Mapping, Value};

use super::Refusal;
use crate::config::{self, Config};

/// The body, a mapping, with the path's `id` (a different `id` in it is refused).
pub(super) fn mapping_with_id(id: &str, body: &str) -> Result<Mapping, Refusal> {
    let parsed: Value = serde_norway::from_str(body)
        .map_err(|error| Refusal::new(422, format!("not valid YAML or JSON: {error}")))?;
    let Value::Mapping(mut component) = parsed else {
        return Err(Refusal::new(422, "the body must be a mapping"));
    };
    if let Some(given) = component.get("id").and_then(Value::as_str)
        && given != id
    {
        return Err(Refusal::new(
            422,
            format!("id: `{given}` is not the path's `{id}`"),
        ));
    }
    component.insert("id".into(), id.into());
    Ok(component)
}

/// Parses a configuration of `sections` (with an API that listens nowhere) like the file;
/// each problem's path loses `prefix`, so it reads as a path in the body.
pub(super) fn parse_as_file(sections: Vec<(&str, Value)>, prefix: &str) -> Result<Config, Refusal> {
    let mut document = Mapping::new();
    for (name, section) in sections {
        document.insert(name.into(), section);
    }
    let mut api = Mapping::new();
    api.insert("listen".into(), Value::Null);
    document.insert("api".into(), Value::Mapping(api));
    let text = serde_norway::to_string(&Value::Mapping(document))
        .map_err(|error| Refusal::new(422, error.to_string()))?;
    config::parse(&text, &|name| std::env::var(name).ok()).map_err(|problems| Refusal {
        status: 422,
        problems: problems
            .list()
            .iter()
            .map(|problem| problem.to_string().replacen(prefix, "", 1))
            .collect(),
    })
}

/// One mapping as a section of one item.
pub(super) fn one(item: Mapping) -> Value {
    Value::Sequence(vec![Value::Mapping(item)])
}
