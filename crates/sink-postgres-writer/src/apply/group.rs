//! Upserts of one mirror table grouped by the columns they carry: a row whose unchanged TOAST
//! columns are left out has fewer columns than the others, so it needs its own statement.

use std::collections::HashMap;
use std::sync::Arc;

use surefoot_core_model::{Column, Row};

use crate::encode::{text_form, write_copy_field};
use crate::plan::KeyText;

/// Rows that carry the same columns, with their keys, in plan order.
#[derive(Debug, Default)]
pub(crate) struct UpsertGroup<'p> {
    /// The columns present (not unchanged), in row order.
    pub(crate) names: Vec<Arc<str>>,
    /// Each row with its key's text form.
    pub(crate) rows: Vec<(&'p KeyText, &'p Row)>,
}

/// The columns of `row` that carry a value (unchanged TOAST columns are left out).
fn present(row: &Row) -> impl Iterator<Item = &Column> {
    row.columns().iter().filter(|c| !c.value.is_unchanged())
}

impl<'p> UpsertGroup<'p> {
    /// Whether `row` carries exactly this group's columns.
    fn fits(&self, row: &Row) -> bool {
        self.names.len() == present(row).count()
            && self
                .names
                .iter()
                .zip(present(row))
                .all(|(n, c)| *n == c.name)
    }

    /// The rows for which `keep(index)` holds, as one `text[]` column per name.
    pub(crate) fn columns(&self, keep: impl Fn(usize) -> bool) -> Vec<Vec<Option<String>>> {
        let mut arrays = vec![Vec::new(); self.names.len()];
        for (index, (_, row)) in self.rows.iter().enumerate() {
            if keep(index) {
                for (array, column) in arrays.iter_mut().zip(present(row)) {
                    array.push(text_form(&column.value));
                }
            }
        }
        arrays
    }

    /// The rows for which `keep(index)` holds, in `COPY`'s text format, written straight from
    /// the values (no string per value).
    pub(crate) fn copy_text(&self, keep: impl Fn(usize) -> bool) -> String {
        let mut text = String::with_capacity(self.rows.len() * 16 * self.names.len().max(1));
        let mut scratch = String::new();
        for (index, (_, row)) in self.rows.iter().enumerate() {
            if !keep(index) {
                continue;
            }
            for (i, column) in present(row).enumerate() {
                if i > 0 {
                    text.push('\t');
                }
                write_copy_field(&column.value, &mut text, &mut scratch);
            }
            text.push('\n');
        }
        text
    }
}

/// Upsert groups of one plan, found by columns; consecutive rows nearly always share their
/// columns, so the previous row's group is tried first, without building a lookup key.
#[derive(Debug, Default)]
pub(crate) struct UpsertGroups<'p> {
    groups: Vec<UpsertGroup<'p>>,
    by_names: HashMap<Vec<Arc<str>>, usize>,
    last: Option<usize>,
}

impl<'p> UpsertGroups<'p> {
    /// Adds `row`, keyed by `key`, to the group of its columns.
    pub(crate) fn push(&mut self, key: &'p KeyText, row: &'p Row) {
        let index = match self.last.filter(|&i| self.groups[i].fits(row)) {
            Some(index) => index,
            None => {
                let names: Vec<Arc<str>> = present(row).map(|c| c.name.clone()).collect();
                let next = self.groups.len();
                let index = *self.by_names.entry(names.clone()).or_insert(next);
                if index == next {
                    self.groups.push(UpsertGroup {
                        names,
                        rows: Vec::new(),
                    });
                }
                index
            }
        };
        self.last = Some(index);
        self.groups[index].rows.push((key, row));
    }

    /// The groups, in the order their first row came.
    pub(crate) fn into_groups(self) -> Vec<UpsertGroup<'p>> {
        self.groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use surefoot_core_model::Value;

    #[test]
    fn rows_group_by_present_columns_and_render_as_copy_text_and_arrays() {
        let full = |id: i64, body: &str| {
            Row::new()
                .with("id", Value::Int64(id))
                .with("body", Value::Text(body.into()))
        };
        let rows = [
            full(1, "a\tb"),
            Row::new()
                .with("id", Value::Int64(2))
                .with("body", Value::Unchanged),
            full(3, "c"),
        ];
        let keys: Vec<KeyText> = (1..=3).map(|n| vec![Some(n.to_string())]).collect();
        let mut groups = UpsertGroups::default();
        for (key, row) in keys.iter().zip(&rows) {
            groups.push(key, row);
        }
        let groups = groups.into_groups();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].rows.len(), 2);
        assert_eq!(groups[1].names, vec![Arc::<str>::from("id")]);
        assert_eq!(groups[0].copy_text(|_| true), "1\ta\\tb\n3\tc\n");
        assert_eq!(groups[0].copy_text(|i| i == 1), "3\tc\n");
        assert_eq!(
            groups[0].columns(|i| i == 0),
            vec![vec![Some("1".to_owned())], vec![Some("a\tb".to_owned())]]
        );
    }
}
