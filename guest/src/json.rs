//! A JSON tree that keeps every member of every object, in body order.
//!
//! `serde_json::Value` keeps only the last of two members with the same
//! name, so a body like `{"command":"ls","command":"rm"}` would be judged by
//! a value the sender may not have meant. Parsing into this tree instead lets
//! the request rules refuse duplicates by name.
//!
//! Also here: reading a whole body into one object, and quoting untrusted
//! text in an error message.

use crate::prelude::*;
use alloc::collections::BTreeSet;
use core::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

use crate::render::ApiError;

/// One JSON value; objects keep duplicate members and their order.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number as serde_json read it (integers beyond 64 bits become floats).
    Number(Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Node>),
    /// An object's members, duplicates included, in body order.
    Object(Vec<(String, Node)>),
}

impl Node {
    /// How an error message names the kind of this value ("got a number").
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Number(_) => "a number",
            Node::String(_) => "a string",
            Node::Array(_) => "an array",
            Node::Object(_) => "an object",
        }
    }
}

/// Parses a whole body (trailing characters are an error). The error is
/// serde_json's, which carries the line and column the sender needs.
pub fn parse(text: &str) -> Result<Node, serde_json::Error> {
    serde_json::from_str(text)
}

/// The first name that occurs twice among `members`, if any.
pub fn first_duplicate(members: &[(String, Node)]) -> Option<&str> {
    // A sorted set, not pairwise comparison: the top-level object is not
    // capped before this runs, and a body with many members must not cost
    // quadratic time.
    let mut seen = BTreeSet::new();
    members.iter().map(|(name, _)| name.as_str()).find(|name| !seen.insert(*name))
}

/// Reads a body as one JSON object, refusing duplicate members.
pub fn object(body: &[u8]) -> Result<Vec<(String, Node)>, ApiError> {
    let text = core::str::from_utf8(body).map_err(|e| {
        ApiError::invalid_request(format!(
            "request body is not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::invalid_request("request body is empty; expected a JSON object"));
    }
    let node = parse(text).map_err(|e| ApiError::invalid_request(format!("request body is not valid JSON: {e}")))?;
    let Node::Object(members) = node else {
        return Err(ApiError::invalid_request(format!("request body must be a JSON object, got {}", node.kind())));
    };
    if let Some(name) = first_duplicate(&members) {
        return Err(ApiError::invalid_request(format!("duplicate field `{}`", shown(name))));
    }
    Ok(members)
}

/// Untrusted text as an error message may quote it: control characters
/// escaped, and cut short so a huge name can't make a huge error.
pub fn shown(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut out = String::new();
    for c in text.chars().take(MAX_CHARS) {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    if text.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        // serde_json never yields a non-finite float from text, so `None`
        // cannot happen; refuse rather than invent a value if it ever does.
        Number::from_f64(v).map(Node::Number).ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut members = Vec::new();
        while let Some((name, value)) = map.next_entry::<String, Node>()? {
            members.push((name, value));
        }
        Ok(Node::Object(members))
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}
