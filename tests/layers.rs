//! The shape of `src/` stays: data flows one way through the layers (vocabulary -> wire ->
//! adapters -> rules -> doors -> composition). A module may import only from its own layer
//! or lower ones; `crate::settings` (the composition of every section) only from the
//! composition layer. The back-edges not yet removed are listed in `KNOWN_BACK_EDGES`: a new
//! one fails this test, and so does an entry that no longer exists (the list only shrinks).
//!
//! The import graph is read from the source text (`use crate::...`, `crate::x::y` paths,
//! `super::`), which is what a newcomer reads too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layer of a module, by its first path segment (or the whole path where a module's
/// children sit in different layers). 0 vocabulary, 1 wire, 2 adapters, 3 rules, 4 doors,
/// 5 composition.
fn layer(module: &str) -> u8 {
    let top = module.split("::").next().unwrap_or(module);
    match top {
        "domain" | "clock" | "signature" | "metrics" | "config" => 0,
        "protocol" => 1,
        "store" | "kafka" | "http_client" | "http_server" | "secure" => 2,
        "error" | "routing" | "lock" | "hosted" | "passive" | "switch" | "statement"
        | "issuance" => 3,
        "pipeline" | "api" | "webhook" | "ops" | "journal" => 4,
        "settings" | "app" | "lib" | "main" => 5,
        other => panic!("module {other} has no layer: add it to tests/layers.rs and lib.rs"),
    }
}

/// Back-edges still to remove; none may be added, and a removed one must leave this list.
/// (Issue 11 found 26, and 5 imports between doors, when this test was written; all gone.)
const KNOWN_BACK_EDGES: &[(&str, &str)] = &[];

fn modules(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(root).unwrap().with_extension("");
                let name = rel
                    .to_str()
                    .unwrap()
                    .trim_end_matches("/mod")
                    .replace('/', "::");
                out.insert(name, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    out
}

/// The longest known module that `path` (a `crate::` path without the prefix) names.
fn resolve(path: &str, known: &BTreeSet<&str>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|cand| known.contains(cand.as_str()))
}

/// Every `crate::a::b` (and `crate::a::{b, c::d}`) path in `src`, without the prefix.
fn crate_paths(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + 7..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let path = &rest[..end];
        if path.ends_with("::") && rest[end..].starts_with('{') {
            let close = rest[end..].find('}').map_or(rest.len(), |c| end + c);
            for item in rest[end + 1..close].split(',') {
                let item = item.trim().split(" as ").next().unwrap_or("").trim();
                if !item.is_empty() {
                    out.push(format!("{path}{item}"));
                }
            }
        } else if !path.is_empty() {
            out.push(path.trim_end_matches(':').to_owned());
        }
    }
    out
}

fn edges() -> BTreeSet<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = modules(&root);
    let known: BTreeSet<&str> = files.keys().map(String::as_str).collect();
    let mut out = BTreeSet::new();
    for (m, src) in &files {
        // Tests inside a module may reach anywhere.
        let src = src.split("#[cfg(test)]").next().unwrap_or(src);
        // A `crate::` path that names no module names an item of the crate root (lib.rs).
        let mut targets: Vec<String> = crate_paths(src)
            .iter()
            .map(|p| resolve(p, &known).unwrap_or_else(|| "lib".to_owned()))
            .collect();
        let parent = m.rsplit_once("::").map_or("", |(p, _)| p);
        for (i, _) in src.match_indices("super::") {
            let name: String = src[i + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let path = if parent.is_empty() {
                name
            } else {
                format!("{parent}::{name}")
            };
            targets.extend(resolve(&path, &known));
        }
        for t in targets {
            if &t != m && !m.starts_with(&format!("{t}::")) && !t.starts_with(&format!("{m}::")) {
                out.insert((m.clone(), t));
            }
        }
    }
    out
}

#[test]
fn no_module_imports_a_higher_layer() {
    let back: BTreeSet<(String, String)> = edges()
        .into_iter()
        .filter(|(from, to)| {
            let top = |m: &str| m.split("::").next().unwrap_or(m).to_owned();
            layer(to) > layer(from)
                || (to == "settings" && layer(from) < 5)
                // Doors never import one another.
                || (layer(from) == 4 && layer(to) == 4 && top(from) != top(to))
        })
        .collect();
    let known: BTreeSet<(String, String)> = KNOWN_BACK_EDGES
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    if std::env::var("IPG_PRINT_BACK_EDGES").is_ok() {
        for (a, b) in &back {
            println!("    (\"{a}\", \"{b}\"),");
        }
    }
    let new: Vec<_> = back.difference(&known).collect();
    let gone: Vec<_> = known.difference(&back).collect();
    assert!(
        new.is_empty(),
        "imports that run up the layers (see tests/layers.rs and lib.rs): {new:#?}"
    );
    assert!(
        gone.is_empty(),
        "back-edges removed: drop them from KNOWN_BACK_EDGES in tests/layers.rs: {gone:#?}"
    );
}

/// Imports between peers of one layer that make a cycle (a imports b, b imports a, at the
/// granularity of top-level modules): none may be added, and a removed one must leave this
/// list. (Issue 23 found lib <-> app and routing <-> passive; both gone.)
const KNOWN_PEER_CYCLES: &[(&str, &str)] = &[];

/// Top-level modules of one layer that reach each other through imports within that layer.
#[test]
fn no_peers_of_one_layer_import_each_other_in_a_cycle() {
    let top = |m: &str| m.split("::").next().unwrap_or(m).to_owned();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to) in edges() {
        let (a, b) = (top(&from), top(&to));
        if a != b && layer(&a) == layer(&b) {
            graph.entry(a).or_default().insert(b);
        }
    }
    // a -> b is in a cycle when b reaches a again.
    let reaches = |start: &str, goal: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![start.to_owned()];
        while let Some(n) = stack.pop() {
            if n == goal {
                return true;
            }
            if seen.insert(n.clone()) {
                stack.extend(graph.get(&n).into_iter().flatten().cloned());
            }
        }
        false
    };
    let cyclic: BTreeSet<(String, String)> = graph
        .iter()
        .flat_map(|(a, bs)| bs.iter().map(move |b| (a.clone(), b.clone())))
        .filter(|(a, b)| reaches(b, a))
        .collect();
    let known: BTreeSet<(String, String)> = KNOWN_PEER_CYCLES
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    let new: Vec<_> = cyclic.difference(&known).collect();
    let gone: Vec<_> = known.difference(&cyclic).collect();
    assert!(
        new.is_empty(),
        "imports between peers of one layer that make a cycle (see tests/layers.rs): {new:#?}"
    );
    assert!(
        gone.is_empty(),
        "peer cycles removed: drop them from KNOWN_PEER_CYCLES in tests/layers.rs: {gone:#?}"
    );
}

#[test]
fn the_crate_doc_lists_every_module() {
    let lib = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")).unwrap();
    let doc: String = lib
        .lines()
        .take_while(|l| l.starts_with("//!") || l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    for line in lib.lines().filter(|l| l.starts_with("pub mod ")) {
        let name = line.trim_start_matches("pub mod ").trim_end_matches(';');
        assert!(
            doc.contains(&format!("[`{name}`]")),
            "lib.rs's crate doc does not list module {name}"
        );
    }
}
