//! Our `key=value` suffix of `Operation.name`.
//!
//! `Operation.name` is a free-text kind label that Comal ignores. We write it as
//! `kind[;key=value]*`, e.g. `locate;tensor=x;level=0;dim=0;size=60;index=j`, to carry the few
//! parameters of our primitives that the schema has no field for. Keys and values escape `%`,
//! `;` and `=` (and control characters) as `%XX`. A name without `;` is just a kind label, so
//! graphs from other emitters parse as having no metadata.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Parsed `Operation.name`: the kind label and its key/value pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Meta {
    pub kind: String,
    pub map: BTreeMap<String, String>,
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '%' || c == ';' || c == '=' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn unescape(s: &str) -> Result<String, String> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let b = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
            match b {
                Some(b) => out.push(b),
                None => return Err(format!("bad escape in {s:?}")),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("escape in {s:?} is not UTF-8"))
}

impl Meta {
    /// A name with this kind label and no pairs.
    pub fn new(kind: &str) -> Meta {
        Meta { kind: kind.to_string(), map: BTreeMap::new() }
    }

    /// Adds a pair (builder style).
    pub fn with(mut self, key: &str, value: impl ToString) -> Meta {
        self.map.insert(key.to_string(), value.to_string());
        self
    }

    /// Adds a pair.
    pub fn set(&mut self, key: &str, value: impl ToString) {
        self.map.insert(key.to_string(), value.to_string());
    }

    /// The text form written to `Operation.name`.
    pub fn render(&self) -> String {
        let mut s = escape(&self.kind);
        for (k, v) in &self.map {
            let _ = write!(s, ";{}={}", escape(k), escape(v));
        }
        s
    }

    /// Parses an `Operation.name`. A segment without `=` is an error; so is a bad escape.
    pub fn parse(name: &str) -> Result<Meta, String> {
        let mut parts = name.split(';');
        let kind = unescape(parts.next().unwrap_or(""))?;
        let mut map = BTreeMap::new();
        for p in parts {
            let (k, v) = p.split_once('=').ok_or_else(|| format!("segment {p:?} is not key=value"))?;
            map.insert(unescape(k)?, unescape(v)?);
        }
        Ok(Meta { kind, map })
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// Parses the value of `key` as `T`, if present.
    pub fn parse_key<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse::<T>().map(Some).map_err(|_| format!("{key}={v:?} is not a valid value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_awkward_text() {
        let m = Meta::new("lo;c=a%te").with("tensor", "a;b=c%d\n").with("size", 40).with("", "");
        let s = m.render();
        assert!(!s.contains('\n'));
        assert_eq!(Meta::parse(&s).unwrap(), m);
        assert_eq!(Meta::parse("joiner").unwrap(), Meta::new("joiner"));
        assert_eq!(Meta::parse("").unwrap(), Meta::new(""));
        assert_eq!(Meta::parse("x;é=ü").unwrap().get("é"), Some("ü"));
    }

    #[test]
    fn malformed_names_are_errors() {
        for bad in ["a;b", "a;b=%", "a;b=%zz", "a;b=%FF", "a;%4=1"] {
            assert!(Meta::parse(bad).is_err(), "{bad}");
        }
        let m = Meta::parse("a;level=x").unwrap();
        assert!(m.parse_key::<u32>("level").is_err());
        assert_eq!(m.parse_key::<u32>("other"), Ok(None));
    }
}
