//! Numbers and booleans that may come as strings: a value substituted from the environment
//! (`port: ${PGPORT}`) is text, and is read as the number or boolean it spells.

use std::fmt::Display;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, de::Error};

#[derive(Deserialize)]
#[serde(untagged)]
enum Spelled<T> {
    Typed(T),
    Text(String),
}

/// A number, or a string that parses as one.
pub(crate) fn number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + FromStr,
    T::Err: Display,
{
    match Spelled::<T>::deserialize(deserializer)? {
        Spelled::Typed(value) => Ok(value),
        Spelled::Text(text) => text
            .trim()
            .parse()
            .map_err(|error| D::Error::custom(format!("`{text}` is not a number here: {error}"))),
    }
}

/// A boolean, or `true`/`false` as a string.
pub(crate) fn boolean<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    match Spelled::<bool>::deserialize(deserializer)? {
        Spelled::Typed(value) => Ok(value),
        Spelled::Text(text) => match text.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(D::Error::custom(format!("`{text}` is not true or false"))),
        },
    }
}
