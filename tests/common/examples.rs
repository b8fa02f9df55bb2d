//! The examples of docs/*.md: the JSON block after each `<!-- example: kind -->` marker.
//! Tests decode them, apply them and validate them against the contracts, so a document's
//! example cannot drift from the code.

/// The JSON blocks after `<!-- example: kind -->` in `docs/<file>`, as written; panics
/// when there is none.
pub fn doc_examples(file: &str, kind: &str) -> Vec<String> {
    let path = format!("{}/docs/{file}", env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let marker = format!("<!-- example: {kind} -->");
    let mut out = Vec::new();
    let mut rest = doc.as_str();
    while let Some(i) = rest.find(&marker) {
        rest = &rest[i + marker.len()..];
        let start = rest
            .find("```json\n")
            .unwrap_or_else(|| panic!("{file}: {marker} not followed by a json block"))
            + 8;
        let end = rest[start..].find("```").unwrap() + start;
        out.push(rest[start..end].to_owned());
        rest = &rest[end..];
    }
    assert!(!out.is_empty(), "no {kind} examples in docs/{file}");
    out
}
