//! One JSON reading for every body the switch takes from outside: a channel request (Kafka
//! and HTTP), an Active Client body, a passive institution's answer, a bill file of the CLI.
//!
//! RFC 8259 §4 says names within an object SHOULD be unique and leaves the meaning of a
//! repeated name to the reader; serde_json keeps the last value, other parsers the first.
//! A body `{"amount": 1, ..., "amount": 100000}` signed over its exact bytes would then pay
//! 100,000 rupiah here while a bank's limit or fraud check that reads the first value saw
//! 1 (serde-rs/json #762). The switch refuses a repeated name at any depth, naming it
//! (`body.amount`), so that no two readers of one signed body can disagree.
//! Names are compared after JSON unescaping (`"amo\u0075nt"` is `amount`).
//!
//! One pass, no second parse: the object is built as serde_json's own `Value` would be,
//! and `Map::insert` already says whether the name was there.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The reason a refusal gives for a repeated name (the field is the name's path).
pub const REPEATED: &str = "appears more than once in its object";

/// Why a body is not the one JSON value the switch reads.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// Not JSON at all (syntax, encoding, trailing bytes), as serde_json says.
    #[error("malformed JSON: {0}")]
    Malformed(serde_json::Error),
    /// A name repeated within one object; `path` is the dotted path of the name from the
    /// document's root (`body.amount`; array elements as `[i]`).
    #[error("duplicate key {path}: a name may appear once in an object")]
    Duplicate { path: String },
}

impl JsonError {
    /// The field a refusal names: the repeated key's path, or `fallback` for broken JSON.
    pub fn field<'a>(&'a self, fallback: &'a str) -> &'a str {
        match self {
            JsonError::Duplicate { path } => path,
            JsonError::Malformed(_) => fallback,
        }
    }
}

/// Parses one JSON document, refusing any object that repeats a name.
///
/// # Errors
/// [`JsonError::Malformed`] for what serde_json refuses, [`JsonError::Duplicate`] with the
/// repeated name's path.
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    let dup = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let out = Strict { dup: &dup }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    match (out, dup.into_inner()) {
        (_, Some(path)) => Err(JsonError::Duplicate { path }),
        (Ok(v), None) => Ok(v),
        (Err(e), None) => Err(JsonError::Malformed(e)),
    }
}

/// The first name repeated at the top level of a JSON object document, whatever is
/// repeated deeper (for a reader that decides by top-level names only, or must know
/// whether the names it answers by are ambiguous). `None` for a document without one, and
/// for one that is not a JSON object.
pub fn top_level_repeat(bytes: &[u8]) -> Option<String> {
    struct Top;
    impl<'de> Visitor<'de> for Top {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<de::IgnoredAny>()?;
                if !seen.insert(key.clone()) {
                    return Ok(Some(key));
                }
            }
            Ok(None)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.deserialize_map(Top).ok().flatten()
}

/// Parses one JSON document into `T`, refusing repeated names as [`parse`] does.
///
/// # Errors
/// As [`parse`]; a document of the wrong shape for `T` is [`JsonError::Malformed`].
pub fn from_slice<T: de::DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    serde_json::from_value(parse(bytes)?).map_err(JsonError::Malformed)
}

/// The seed of one value; `dup` receives the path of the first repeated name.
#[derive(Clone, Copy)]
struct Strict<'a> {
    dup: &'a RefCell<Option<String>>,
}

impl Strict<'_> {
    /// On the way out of a failed child: puts `segment` (a name or `[i]`) in front of the
    /// recorded path (nothing to do when the failure was not a repeated name).
    fn prefix(&self, segment: fmt::Arguments<'_>) {
        if let Some(path) = self.dup.borrow_mut().as_mut() {
            let sep = if path.starts_with('[') { "" } else { "." };
            *path = format!("{segment}{sep}{path}");
        }
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        loop {
            match seq.next_element_seed(self) {
                Ok(Some(v)) => out.push(v),
                Ok(None) => return Ok(Value::Array(out)),
                Err(e) => {
                    self.prefix(format_args!("[{}]", out.len()));
                    return Err(e);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = match map.next_value_seed(self) {
                Ok(v) => v,
                Err(e) => {
                    self.prefix(format_args!("{key}"));
                    return Err(e);
                }
            };
            // One lookup: a vacant name takes the value, an occupied one is the repeat.
            match out.entry(key) {
                serde_json::map::Entry::Vacant(v) => {
                    v.insert(value);
                }
                serde_json::map::Entry::Occupied(o) => {
                    *self.dup.borrow_mut() = Some(o.key().clone());
                    return Err(de::Error::custom("duplicate key"));
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dup(s: &str) -> String {
        match parse(s.as_bytes()) {
            Err(JsonError::Duplicate { path }) => path,
            other => panic!("{s}: expected a duplicate, got {other:?}"),
        }
    }

    #[test]
    fn repeated_names_are_refused_with_their_path() {
        assert_eq!(dup(r#"{"amount":1,"amount":100000}"#), "amount");
        assert_eq!(
            dup(r#"{"type":"payment","body":{"ref_id":"A","amount":1,"amount":100000}}"#),
            "body.amount"
        );
        assert_eq!(dup(r#"{"a":[{"x":1},{"y":1,"y":2}]}"#), "a[1].y");
        assert_eq!(dup(r#"[{"k":1,"k":1}]"#), "[0].k");
        // Equal after unescaping, even with the same value.
        assert_eq!(dup(r#"{"amo\u0075nt":5,"amount":5}"#), "amount");
    }

    #[test]
    fn top_level_repeats_are_found_behind_deeper_ones() {
        assert_eq!(
            top_level_repeat(br#"{"body":{"a":1,"a":2},"request_id":"x","request_id":"y"}"#),
            Some("request_id".into())
        );
        assert_eq!(
            top_level_repeat(br#"{"body":{"a":1,"a":2},"rc":"SUCCESS"}"#),
            None
        );
        assert_eq!(top_level_repeat(b"[1,1]"), None);
    }

    #[test]
    fn everything_else_reads_as_serde_json_reads_it() {
        for s in [
            r#"{"a":1,"b":[1,2,{"c":null}],"d":"x","e":-3,"f":1.5,"g":true}"#,
            r#"{"a":{"a":{"a":1}}}"#,
            r#"[]"#,
            r#""text""#,
            "18446744073709551615",
        ] {
            let ours = parse(s.as_bytes()).unwrap();
            let theirs: Value = serde_json::from_str(s).unwrap();
            assert_eq!(ours, theirs, "{s}");
            // Order kept (the answers keep the sender's order where they echo it).
            assert_eq!(ours.to_string(), theirs.to_string());
        }
        for bad in [
            "",
            "{",
            r#"{"a":1} x"#,
            r#"{"a":1,}"#,
            "\u{feff}{}",
            r#""\ud800""#,
        ] {
            assert!(
                matches!(parse(bad.as_bytes()), Err(JsonError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Over arbitrary bytes: never a panic, and exactly serde_json's verdict when no
        /// name repeats.
        #[test]
        fn agrees_with_serde_json_on_arbitrary_input(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let theirs = serde_json::from_slice::<Value>(&bytes);
            match parse(&bytes) {
                Ok(v) => prop_assert_eq!(v, theirs.unwrap()),
                Err(JsonError::Malformed(_)) => prop_assert!(theirs.is_err()),
                Err(JsonError::Duplicate { .. }) => prop_assert!(theirs.is_ok()),
            }
        }

        /// Objects built from random names: refused exactly when a name repeats.
        #[test]
        fn refuses_exactly_the_objects_with_a_repeated_name(names in proptest::collection::vec("[a-c]{1,2}", 0..6)) {
            let body = names
                .iter()
                .enumerate()
                .map(|(i, n)| format!("\"{n}\":{i}"))
                .collect::<Vec<_>>()
                .join(",");
            let doc = format!("{{\"body\":{{{body}}}}}");
            let unique = names.iter().collect::<std::collections::BTreeSet<_>>().len() == names.len();
            match parse(doc.as_bytes()) {
                Ok(_) => prop_assert!(unique),
                Err(JsonError::Duplicate { path }) => {
                    prop_assert!(!unique);
                    prop_assert!(path.starts_with("body."));
                }
                Err(e) => prop_assert!(false, "{doc}: {e}"),
            }
        }
    }
}
