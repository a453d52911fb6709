//! COPY's text format: one row per line, columns separated by tabs, `\N` for NULL, and
//! backslash escapes inside values.
//!
//! [`split_line`] turns a line into its columns' bytes, unescaped, reusing the caller's buffers so
//! that a table of any size is decoded without allocating per row.

/// Where a column's bytes are: in the line itself (no escapes), or unescaped in the buffer.
#[derive(Debug, Clone, Copy)]
enum Span {
    Null,
    Line(usize, usize),
    Buffer(usize, usize),
}

/// The columns of one row, reused from row to row.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    /// Unescaped bytes of the columns that had escapes, back to back.
    bytes: Vec<u8>,
    /// Each column's place.
    spans: Vec<Span>,
}

impl Fields {
    /// The columns of `line`, the row last split.
    pub(crate) fn iter<'a>(&'a self, line: &'a [u8]) -> impl Iterator<Item = Option<&'a [u8]>> {
        self.spans.iter().map(move |span| match *span {
            Span::Null => None,
            Span::Line(start, end) => line.get(start..end),
            Span::Buffer(start, end) => self.bytes.get(start..end),
        })
    }

    /// How many columns the last row had.
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }
}

/// Splits `line` (without its newline) into `fields`; read them back with
/// `fields.iter(line)`. Fails on a lone backslash at the end of a value.
#[cfg(test)]
pub(crate) fn split_row(line: &[u8], fields: &mut Fields) -> Result<(), &'static str> {
    match split_line(line, fields)? {
        Some(_) => Err("a newline inside a row"),
        None => Ok(()),
    }
}

/// Splits the first line of `data` into `fields` in one pass and returns its length (without
/// its newline); `None` when `data` has no newline, `fields` then holding its columns as if it
/// were a whole line. Fails on a lone backslash at the end of a value.
pub(crate) fn split_line(data: &[u8], fields: &mut Fields) -> Result<Option<usize>, &'static str> {
    fields.bytes.clear();
    fields.spans.clear();
    // Tabs end columns, a backslash marks its column as escaped, a newline ends the line.
    let mut start = 0;
    let mut escaped = false;
    for (at, &byte) in data.iter().enumerate() {
        match byte {
            b'\t' => {
                fields.push(data, start, at, escaped)?;
                start = at + 1;
                escaped = false;
            }
            b'\\' => escaped = true,
            b'\n' => {
                fields.push(data, start, at, escaped)?;
                return Ok(Some(at));
            }
            _ => {}
        }
    }
    fields.push(data, start, data.len(), escaped)?;
    Ok(None)
}

impl Fields {
    /// Records the column `line[start..end]`, which has a backslash in it if `escaped`.
    fn push(
        &mut self,
        line: &[u8],
        start: usize,
        end: usize,
        escaped: bool,
    ) -> Result<(), &'static str> {
        let span = if !escaped {
            Span::Line(start, end)
        } else {
            let column = line.get(start..end).unwrap_or_default();
            if column == b"\\N" {
                Span::Null
            } else {
                let from = self.bytes.len();
                unescape(column, &mut self.bytes)?;
                Span::Buffer(from, self.bytes.len())
            }
        };
        self.spans.push(span);
        Ok(())
    }
}

/// Appends `column` to `out` with its backslash escapes resolved.
fn unescape(column: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    let mut rest = column;
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        let Some((&escaped, tail)) = rest.split_first() else {
            return Err("a value ends with a lone backslash");
        };
        rest = tail;
        let plain = match escaped {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            b'0'..=b'7' => {
                let (value, tail) = number(escaped, rest, 8, 3);
                rest = tail;
                value
            }
            b'x' if rest.first().is_some_and(u8::is_ascii_hexdigit) => {
                let (value, tail) = match rest.split_first() {
                    Some((&first, tail)) => number(first, tail, 16, 2),
                    None => (b'x', rest),
                };
                rest = tail;
                value
            }
            other => other,
        };
        out.push(plain);
    }
    Ok(())
}

/// A number in `radix` starting with digit `first` and taking up to `most` digits in all;
/// returns its low byte (as COPY does) and what follows it.
fn number(first: u8, rest: &[u8], radix: u32, most: usize) -> (u8, &[u8]) {
    let digit = |byte: u8| char::from(byte).to_digit(radix);
    let mut value = digit(first).unwrap_or(0);
    let mut used = 0;
    for &byte in rest.iter().take(most - 1) {
        let Some(next) = digit(byte) else { break };
        value = value * radix + next;
        used += 1;
    }
    let low = u8::try_from(value & 0xff).unwrap_or(0);
    (low, rest.get(used..).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &[u8]) -> Vec<Option<Vec<u8>>> {
        let mut fields = Fields::default();
        split_row(line, &mut fields).unwrap();
        fields
            .iter(line)
            .map(|field| field.map(<[u8]>::to_vec))
            .collect()
    }

    #[test]
    fn columns_nulls_and_escapes() {
        assert_eq!(
            split(b"1\t\\N\tplain"),
            [Some(b"1".to_vec()), None, Some(b"plain".to_vec())]
        );
        assert_eq!(
            split(b"a\\tb\\nc\\\\d\\re\\bf\\fg\\vh"),
            [Some(b"a\tb\nc\\d\re\x08f\x0cg\x0bh".to_vec())]
        );
        assert_eq!(
            split(b"\\101\\x42\\7\\x4g\\q"),
            [Some(b"AB\x07\x04gq".to_vec())]
        );
        assert_eq!(split(b""), [Some(Vec::new())]);
        assert_eq!(split(b"\t"), [Some(Vec::new()), Some(Vec::new())]);
        assert_eq!(split(b"\\\\N"), [Some(b"\\N".to_vec())]);
        assert_eq!(split(b"\\x"), [Some(b"x".to_vec())]);
    }

    #[test]
    fn a_lone_backslash_at_the_end_is_an_error() {
        let mut fields = Fields::default();
        assert!(split_row(b"abc\\", &mut fields).is_err());
    }

    #[test]
    fn buffers_are_reused() {
        let mut fields = Fields::default();
        split_row(b"1\t2\t3", &mut fields).unwrap();
        assert_eq!(fields.len(), 3);
        split_row(b"4", &mut fields).unwrap();
        assert_eq!(fields.len(), 1);
        assert_eq!(fields.iter(b"4").next().unwrap().unwrap(), b"4");
    }
}
