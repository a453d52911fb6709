//! `bytea` text forms: hex (`\x0aff`, the default) and the older escape form (`a\000\\b`).

/// The bytes of a `bytea` in hex or escape form; `None` if the text is in neither.
pub(crate) fn parse_bytea(text: &str) -> Option<Vec<u8>> {
    match text.strip_prefix("\\x") {
        Some(hex) => parse_hex(hex.as_bytes()),
        None => parse_escape(text.as_bytes()),
    }
}

fn parse_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks_exact(2)
        .map(|pair| match pair {
            [high, low] => Some(hex_digit(*high)? << 4 | hex_digit(*low)?),
            _ => None,
        })
        .collect()
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Escape form: `\\` is a backslash, `\ooo` an octal byte, every other byte itself.
fn parse_escape(text: &[u8]) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&first, tail)) = rest.split_first() {
        if first != b'\\' {
            bytes.push(first);
            rest = tail;
            continue;
        }
        let (byte, tail) = match tail {
            [b'\\', tail @ ..] => (b'\\', tail),
            [a, b, c, tail @ ..] => (octal_byte(*a, *b, *c)?, tail),
            _ => return None,
        };
        bytes.push(byte);
        rest = tail;
    }
    Some(bytes)
}

fn octal_byte(a: u8, b: u8, c: u8) -> Option<u8> {
    let digit = |byte: u8| matches!(byte, b'0'..=b'7').then(|| u16::from(byte - b'0'));
    let value = digit(a)? * 64 + digit(b)? * 8 + digit(c)?;
    u8::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_escape_forms_decode() {
        assert_eq!(parse_bytea("\\x"), Some(vec![]));
        assert_eq!(parse_bytea("\\x00FFa0"), Some(vec![0, 255, 0xa0]));
        assert_eq!(
            parse_bytea("a\\000\\\\b\\377"),
            Some(b"a\0\\b\xff".to_vec())
        );
        assert_eq!(parse_bytea(""), Some(vec![]));
    }

    #[test]
    fn malformed_forms_are_rejected() {
        for text in ["\\x0", "\\x0g", "\\", "\\12", "\\400", "\\8aa", "ab\\q12"] {
            assert_eq!(parse_bytea(text), None, "{text:?}");
        }
    }
}
