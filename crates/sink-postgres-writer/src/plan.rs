//! Collapsing one flush's changes of a mirror table into one net effect per key.
//!
//! Changes are folded in position order, so the last change of a key wins and per-key order is
//! kept; distinct keys commute, so the effects can then be applied as a few multi-row
//! statements (FINDINGS W-21) instead of one round trip per change.
//!
//! Unchanged TOAST values ([`Value::Unchanged`]) are filled from the key's earlier state in the
//! same flush, else from the change's `before` row (replica identity `FULL`); what is still
//! unchanged is left out of the statement, so the target keeps its stored value.

use std::borrow::Cow;

use indexmap::IndexMap;

use surefoot_core_model::{Change, Operation, Row, Value};

use crate::encode::text_form;

/// A key's values in text form.
pub(crate) type KeyText = Vec<Option<String>>;

/// What happens to one key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect<'a> {
    /// The row is removed.
    Delete,
    /// The row is inserted or updated with these columns (some may still be unchanged);
    /// borrowed from the change unless unchanged values had to be filled in (FINDINGS W-23).
    Upsert(Cow<'a, Row>),
}

/// The net effect of a flush on one mirror table.
#[derive(Debug, Default)]
pub(crate) struct MirrorPlan<'a> {
    /// Remove every row first.
    pub(crate) truncate: bool,
    /// Effect per key, keys in first-seen order (a later effect replaces an earlier one in
    /// place). One map holds both, so each key is encoded and stored once.
    pub(crate) effects: IndexMap<KeyText, Effect<'a>>,
    /// The upserts as `COPY` text, made while planning for a table that inserts first.
    pub(crate) rendered: Option<crate::apply::insert_first::Rendered>,
}

impl<'a> MirrorPlan<'a> {
    /// Folds `change` into the plan. `Err` says why the change cannot be applied.
    pub(crate) fn add(&mut self, change: &'a Change, key: &[String]) -> Result<(), String> {
        match &change.operation {
            Operation::Insert { after } => {
                let new = key_of(after, key)?;
                self.set(new, Effect::Upsert(Cow::Borrowed(after)));
            }
            Operation::Update {
                key: old,
                before,
                after,
            } => {
                let new = key_of(after, key)?;
                let old = old.as_ref().map(|row| key_of(row, key)).transpose()?;
                let moved = old.as_ref().filter(|old| **old != new);
                let prior_key = moved.unwrap_or(&new);
                let prior = match self.effects.get(prior_key) {
                    Some(Effect::Upsert(row)) => Some(row.as_ref()),
                    _ => None,
                };
                let merged = if after.columns().iter().any(|c| c.value.is_unchanged()) {
                    Cow::Owned(fill_unchanged(after, prior, before.as_ref()))
                } else {
                    Cow::Borrowed(after)
                };
                if let Some(old) = moved.cloned() {
                    if merged.columns().iter().any(|c| c.value.is_unchanged()) {
                        return Err("the key changed and an unchanged TOAST column's value is \
                                    unknown (set REPLICA IDENTITY FULL on the source table)"
                            .to_owned());
                    }
                    self.set(old, Effect::Delete);
                }
                self.set(new, Effect::Upsert(merged));
            }
            Operation::Delete { key: old, before } => {
                let row = old
                    .as_ref()
                    .or(before.as_ref())
                    .ok_or("a delete without its key")?;
                self.set(key_of(row, key)?, Effect::Delete);
            }
            Operation::Truncate => {
                self.truncate = true;
                self.effects.clear();
            }
        }
        Ok(())
    }

    fn set(&mut self, key: KeyText, effect: Effect<'a>) {
        self.effects.insert(key, effect);
    }
}

/// The key's values of `row`, which must all be present.
fn key_of(row: &Row, key: &[String]) -> Result<KeyText, String> {
    key.iter()
        .map(|column| match row.get(column) {
            Some(Value::Unchanged) => Err(format!("key column `{column}` is unchanged")),
            Some(value) => Ok(text_form(value)),
            None => Err(format!("key column `{column}` is missing")),
        })
        .collect()
}

fn fill_unchanged(after: &Row, prior: Option<&Row>, before: Option<&Row>) -> Row {
    let known = |row: Option<&Row>, name: &str| {
        row.and_then(|row| row.get(name))
            .filter(|value| !value.is_unchanged())
            .cloned()
    };
    after
        .columns()
        .iter()
        .map(|column| {
            let value = if column.value.is_unchanged() {
                known(prior, &column.name)
                    .or_else(|| known(before, &column.name))
                    .unwrap_or(Value::Unchanged)
            } else {
                column.value.clone()
            };
            (column.name.clone(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use surefoot_core_model::{Position, TableRef};

    fn t() -> TableRef {
        TableRef::new("public", "t")
    }

    fn row(id: i64, body: Value) -> Row {
        Row::new().with("id", Value::Int64(id)).with("body", body)
    }

    fn key() -> Vec<String> {
        vec!["id".to_owned()]
    }

    #[test]
    fn last_change_per_key_wins_and_unchanged_is_filled_from_earlier() {
        let mut plan = MirrorPlan::default();
        let text = |s: &str| Value::Text(s.into());
        let changes = [
            Change::insert(Position::Sequence(1), t(), row(1, text("big"))),
            Change::update(
                Position::Sequence(2),
                t(),
                None,
                None,
                row(1, Value::Unchanged),
            ),
            Change::update(
                Position::Sequence(3),
                t(),
                None,
                None,
                row(2, Value::Unchanged),
            ),
            Change::insert(Position::Sequence(4), t(), row(3, text("x"))),
            Change::delete(Position::Sequence(5), t(), Some(row(3, Value::Null)), None),
        ];
        for change in &changes {
            plan.add(change, &key()).unwrap();
        }
        let k = |id: &str| vec![Some(id.to_owned())];
        let order: Vec<&KeyText> = plan.effects.keys().collect();
        assert_eq!(order, [&k("1"), &k("2"), &k("3")]);
        assert_eq!(
            plan.effects[&k("1")],
            Effect::Upsert(Cow::Owned(row(1, text("big"))))
        );
        assert_eq!(
            plan.effects[&k("2")],
            Effect::Upsert(Cow::Owned(row(2, Value::Unchanged)))
        );
        assert_eq!(plan.effects[&k("3")], Effect::Delete);
        let truncate = Change::truncate(Position::Sequence(6), t());
        plan.add(&truncate, &key()).unwrap();
        assert!(plan.truncate && plan.effects.is_empty());
    }

    #[test]
    fn key_changes_move_the_row_or_refuse_when_toast_is_unknown() {
        let mut plan = MirrorPlan::default();
        let old = Some(Row::new().with("id", Value::Int64(1)));
        let before = Some(row(1, Value::Text("kept".into())));
        let moved = Change::update(
            Position::Sequence(1),
            t(),
            old.clone(),
            before,
            row(2, Value::Unchanged),
        );
        plan.add(&moved, &key()).unwrap();
        assert_eq!(plan.effects[&vec![Some("1".to_owned())]], Effect::Delete);
        let unknown = Change::update(
            Position::Sequence(2),
            t(),
            old,
            None,
            row(5, Value::Unchanged),
        );
        let mut fresh = MirrorPlan::default();
        assert!(
            fresh
                .add(&unknown, &key())
                .unwrap_err()
                .contains("REPLICA IDENTITY")
        );
        let keyless = Change::insert(Position::Sequence(3), t(), Row::new());
        assert!(fresh.add(&keyless, &key()).unwrap_err().contains("missing"));
        let nothing = Change::delete(Position::Sequence(4), t(), None, None);
        assert!(fresh.add(&nothing, &key()).is_err());
    }
}
