//! A shared immutable string one pointer wide, so that a [`Datum`](super::Datum) is 16 bytes
//! (with `Arc<str>`, a two-word pointer, it is 24, and every kept tuple half as big again).

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// An immutable string shared by reference count: one pointer wide, where `Arc<str>` is two.
/// Making one costs a second small allocation; cloning it, one count increment.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SharedStr(Arc<Box<str>>);

impl Deref for SharedStr {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        self
    }
}

impl From<&str> for SharedStr {
    fn from(text: &str) -> Self {
        Self(Arc::new(Box::from(text)))
    }
}

impl From<String> for SharedStr {
    fn from(text: String) -> Self {
        Self(Arc::new(text.into_boxed_str()))
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pointer_wide_and_reads_as_its_text() {
        assert_eq!(size_of::<SharedStr>(), size_of::<usize>());
        let text = SharedStr::from("abc");
        assert_eq!(&*text, "abc");
        assert_eq!(format!("{text:?} {text}"), "\"abc\" abc");
        assert_eq!(text, SharedStr::from(String::from("abc")));
    }
}
