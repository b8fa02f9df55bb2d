//! The documentation and the shipped files around the code say things the code decides:
//! how many topics the switch creates, which metrics exist, where links lead, which
//! addresses and keys the demo uses, how Redis must persist. These tests read those files
//! as text and hold them to the code (tests/readme.rs covers config keys and metric names
//! mentioned anywhere in docs/configuration.md; tests/protocol_doc.rs the JSON examples of
//! docs/protocol.md).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Files of `dir` (relative to the root) whose names end with `ext`, sorted.
fn files(dir: &str, ext: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.ends_with(ext).then(|| format!("{dir}/{name}"))
        })
        .collect();
    out.sort();
    out
}

/// The Markdown documents a reader follows: README.md, docs/*.md, deploy/README.md.
fn markdown_docs() -> Vec<String> {
    let mut docs = vec!["README.md".to_owned(), "deploy/README.md".to_owned()];
    docs.extend(files("docs", ".md"));
    docs
}

fn default_toml() -> toml::Table {
    read("config/default.toml")
        .parse()
        .expect("config/default.toml")
}

/// Every topic the switch creates with the default configuration: the names of `[topics]`
/// (the retry prefix names no topic itself) plus one retry tier per `webhook.backoff_ms`.
fn default_topic_count() -> usize {
    let d = default_toml();
    let topics = d["topics"].as_table().expect("[topics]");
    let tiers = d["webhook"]["backoff_ms"]
        .as_array()
        .expect("webhook.backoff_ms")
        .len();
    topics
        .keys()
        .filter(|k| k.as_str() != "webhook_retry_prefix")
        .count()
        + tiers
}

/// `word` as a number: digits, or a number word up to twenty.
fn number(word: &str) -> Option<usize> {
    const WORDS: &str = "zero one two three four five six seven eight nine ten eleven twelve \
                         thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty";
    word.parse().ok().or_else(|| {
        WORDS
            .split_whitespace()
            .position(|w| w.eq_ignore_ascii_case(word))
    })
}

/// `(byte offset, word)` of every run of alphanumeric characters in `s`.
fn words(s: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(b)) => {
                out.push((b, &s[b..i]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(b) = start {
        out.push((b, &s[b..]));
    }
    out
}

/// `(count, context)` of every "N topics" said within 120 characters of "creat…" in
/// `text`: claims about how many topics the switch creates.
fn created_topic_claims(text: &str) -> Vec<(usize, String)> {
    let text = text.replace(['\n', '#'], " ");
    let mut out = Vec::new();
    for pair in words(&text).windows(2) {
        let ((at, n), (_, topics)) = (pair[0], pair[1]);
        let Some(n) = number(n).filter(|_| topics.eq_ignore_ascii_case("topics")) else {
            continue;
        };
        let from = text[..at]
            .char_indices()
            .rev()
            .nth(120)
            .map_or(0, |(i, _)| i);
        let to = text[at..]
            .char_indices()
            .nth(120)
            .map_or(text.len(), |(i, _)| at + i);
        let near = &text[from..to];
        if near.to_lowercase().contains("creat") {
            out.push((n, near.split_whitespace().collect::<Vec<_>>().join(" ")));
        }
    }
    out
}

#[test]
fn topic_counts_and_topic_keys_match_the_default_config() {
    let count = default_topic_count();
    let defaults = default_toml();
    let keys: BTreeSet<&str> = defaults["topics"]
        .as_table()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();

    // Counts said in words or digits wherever topic creation is described.
    let mut texts = markdown_docs();
    for dir in ["config", "deploy/config", "deploy/k8s"] {
        texts.extend(files(dir, ".toml"));
    }
    texts.push("deploy/docker-compose.yml".into());
    let mut compose_claims = 0;
    for f in &texts {
        for (n, sentence) in created_topic_claims(&read(f)) {
            assert_eq!(
                n, count,
                "{f} says the switch creates {n} topics; config/default.toml makes it \
                 {count}: \"{sentence}\""
            );
            compose_claims += usize::from(f == "deploy/config/compose.toml");
        }
    }
    assert!(
        compose_claims > 0,
        "deploy/config/compose.toml no longer says how many topics the switch creates"
    );

    // `topics.KEY` in the documents names a key of [topics].
    for f in markdown_docs() {
        let text = read(&f);
        for (i, _) in text.match_indices("`topics.") {
            let rest = &text[i + "`topics.".len()..];
            let key: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                keys.contains(key.as_str()),
                "{f} mentions `topics.{key}`, which config/default.toml does not define"
            );
        }
    }
    // protocol.md's topic table lists every one.
    let protocol = read("docs/protocol.md");
    for key in &keys {
        assert!(
            protocol.contains(&format!("| `topics.{key}` |")),
            "docs/protocol.md's Topics table misses topics.{key}"
        );
    }
    // Shipped configs override only keys that exist.
    for dir in ["config", "deploy/config", "deploy/k8s"] {
        for f in files(dir, ".toml") {
            let t: toml::Table = read(&f).parse().unwrap_or_else(|e| panic!("{f}: {e}"));
            if let Some(topics) = t.get("topics").and_then(toml::Value::as_table) {
                for key in topics.keys() {
                    assert!(keys.contains(key.as_str()), "{f}: unknown topics.{key}");
                }
            }
        }
    }
}

/// Lines of `text` outside fenced code blocks.
fn prose(text: &str) -> impl Iterator<Item = &str> {
    let mut fenced = false;
    text.lines().filter(move |l| {
        if l.trim_start().starts_with("```") {
            fenced = !fenced;
            return false;
        }
        !fenced
    })
}

/// Targets of the inline Markdown links `[text](target)` in `text`, outside code blocks.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let Some(end) = rest.find(')') else { break };
            out.push(rest[..end].trim().to_owned());
            rest = &rest[end..];
        }
    }
    out
}

/// GitHub's anchor for a heading: lowercase, spaces to `-`, punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .filter(|l| l.starts_with('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

#[test]
fn documents_stand_alone_and_their_links_resolve() {
    let root = root().canonicalize().unwrap();
    let mut checked = 0;
    // Nothing a reader is pointed at lives outside the repository.
    let mut shipped = markdown_docs();
    shipped.extend(files("docs", ".json"));
    shipped.extend(files("examples", ".rs"));
    shipped.extend(files("scripts", ".sh"));
    shipped.extend(files("config", ".toml"));
    for f in &shipped {
        let text = read(f);
        for outside in ["../shared", "ipg-reference.md"] {
            assert!(
                !text.contains(outside),
                "{f} points at {outside}, which is not in the repository: quote what is needed"
            );
        }
    }
    for f in markdown_docs() {
        let text = read(&f);
        let dir = root.join(&f).parent().unwrap().to_path_buf();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                root.join(&f)
            } else {
                let p = dir.join(path);
                let p = p
                    .canonicalize()
                    .unwrap_or_else(|_| panic!("{f}: link ({target}) leads to no file"));
                assert!(
                    p.starts_with(&root),
                    "{f}: link ({target}) leads outside the repository"
                );
                p
            };
            if !anchor.is_empty() {
                assert_eq!(
                    file.extension().and_then(|e| e.to_str()),
                    Some("md"),
                    "{f}: link ({target}) has an anchor into a file that is not Markdown"
                );
                let headings = anchors(&std::fs::read_to_string(&file).unwrap());
                assert!(
                    headings.contains(anchor),
                    "{f}: link ({target}): no heading with anchor #{anchor} in {}",
                    file.display()
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked > 10,
        "only {checked} links found: is the parser broken?"
    );
}

/// Every metric name string in src/metrics.rs (`"ipg_..."`).
fn metric_names_in_src() -> BTreeSet<String> {
    let src = read("src/metrics.rs");
    let mut names = BTreeSet::new();
    for (i, _) in src.match_indices("\"ipg_") {
        let rest = &src[i + 1..];
        let end = rest.find('"').unwrap();
        names.insert(rest[..end].to_owned());
    }
    assert!(!names.is_empty(), "no metric names found in src/metrics.rs");
    names
}

/// First-column `ipg_...` names of the table under `## {heading}` in a Markdown file.
fn metrics_table(file: &str, heading: &str) -> BTreeSet<String> {
    let text = read(file);
    let start = text
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("{file}: no section ## {heading}"));
    let section = &text[start + 4..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `ipg_"))
        .map(|l| format!("ipg_{}", &l[..l.find('`').unwrap()]))
        .collect()
}

#[test]
fn metric_tables_match_src_metrics() {
    let src = metric_names_in_src();
    let table = metrics_table("docs/configuration.md", "Metrics");
    let missing: Vec<_> = src.difference(&table).collect();
    let unknown: Vec<_> = table.difference(&src).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "docs/configuration.md's metrics table and src/metrics.rs differ: not in the table \
         {missing:?}; not in src/metrics.rs {unknown:?}"
    );
    for name in metrics_table("docs/webhooks.md", "Metrics") {
        assert!(
            src.contains(&name),
            "docs/webhooks.md: unknown metric {name}"
        );
    }
    // Any ipg_ name in the documents (a PromQL sample, a series suffix) is a real metric.
    for f in markdown_docs() {
        let text = read(&f);
        for (i, _) in text.match_indices("ipg_") {
            if i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric() {
                continue;
            }
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // The crate's name and the sandbox channel's reserved code are not metrics;
            // `ipg_*` is a wildcard, not a name.
            if name.starts_with("ipg_switch") || name == "ipg_sandbox" || name == "ipg_" {
                continue;
            }
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| src.contains(*b)))
                .unwrap_or(&name);
            assert!(
                src.contains(base),
                "{f} mentions {name}, not a metric of src/metrics.rs"
            );
        }
    }
}

#[test]
fn layout_lists_every_source_directory() {
    let readme = read("README.md");
    let start = readme.find("\n## Layout\n").expect("README: ## Layout");
    let layout = &readme[start..];
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(root().join("src")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            dirs.push(format!("src/{}/", entry.file_name().to_string_lossy()));
        }
    }
    assert!(!dirs.is_empty());
    for top in [
        "tests/",
        "benches/",
        "examples/",
        "config/",
        "demo/",
        "docs/",
        "deploy/",
        "scripts/",
    ] {
        dirs.push(top.to_owned());
    }
    for d in dirs {
        assert!(
            layout.contains(&format!("\n{d}")),
            "README's Layout does not list {d}"
        );
    }
    // And what it lists exists.
    for line in first_code_block_lines(layout) {
        let path = line.split_whitespace().next().unwrap_or_default();
        if path.starts_with("src/") {
            assert!(
                root().join(path).exists(),
                "README's Layout lists {path}, which does not exist"
            );
        }
    }
}

/// The lines of the first fenced block of `text`.
fn first_code_block_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split("```")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
}

/// `KEY=VALUE` or `KEY=${ENV:-VALUE}` assignments at the start of the demo script's lines.
fn demo_script_settings() -> HashMap<String, String> {
    read("scripts/run-demo.sh")
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(|(k, v)| {
            let v = v.trim_matches('"');
            let v = v
                .strip_prefix("${")
                .and_then(|v| v.strip_suffix('}'))
                .and_then(|v| v.split_once(":-"))
                .map_or(v, |(_, default)| default);
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn the_demo_script_config_and_examples_agree() {
    let demo: toml::Table = read("config/demo.toml").parse().unwrap();
    let script = read("scripts/run-demo.sh");
    let set = demo_script_settings();

    let url = demo["redis"]["url"]
        .as_str()
        .expect("config/demo.toml: redis.url");
    assert_eq!(
        url,
        format!("redis://127.0.0.1:{}/0", set["REDIS_PORT"]),
        "config/demo.toml's redis.url is not the Redis run-demo.sh starts by default"
    );

    let institutions = demo["institutions"].as_array().unwrap();
    let inst = |code: &str| {
        institutions
            .iter()
            .find(|i| i["code"].as_str() == Some(code))
            .unwrap_or_else(|| panic!("config/demo.toml: no institution {code}"))
    };
    let sch01 = inst("SCH01");
    let webhook_url = sch01["webhook_url"].as_str().unwrap();
    let receiver = read("examples/webhook_receiver.rs");
    let (listen, path) = webhook_url
        .strip_prefix("http://")
        .and_then(|u| u.split_once('/'))
        .expect("SCH01 webhook_url is http://HOST:PORT/PATH");
    assert_eq!(
        set["WEBHOOK_LISTEN"], listen,
        "receiver address vs SCH01's webhook_url"
    );
    assert!(
        receiver.contains(&format!("\"/{path}\"")),
        "examples/webhook_receiver.rs does not serve /{path} (SCH01's webhook_url)"
    );
    let base_url = inst("PST01")["base_url"].as_str().unwrap();
    assert_eq!(
        format!("http://{}/ipg", set["PASSIVE_LISTEN"]),
        base_url,
        "passive institution address vs PST01's base_url"
    );
    for (code, example) in [
        ("SCH01", "webhook_receiver"),
        ("PST01", "passive_institution"),
    ] {
        let key = inst(code)["api_key"].as_str().unwrap();
        assert!(
            script
                .lines()
                .any(|l| l.contains(&format!("/{example}\"")) && l.contains(key)),
            "run-demo.sh does not start {example} with {code}'s key {key}"
        );
    }

    // The payment-in-doubt walk-through (docs/walkthrough.md) needs a bill that answers
    // after the switch's passive timeout.
    let timeout = default_toml()["passive"]["timeout_ms"]
        .as_integer()
        .unwrap();
    let bills: serde_json::Value = serde_json::from_str(&read("demo/passive/bills.json")).unwrap();
    let prefix = inst("PST01")["prefixes"][0].as_str().unwrap();
    let late: Vec<String> = bills
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["delay_ms"].as_i64().is_some_and(|d| d > timeout))
        .map(|b| format!("{prefix}{}", b["virtual_account"].as_str().unwrap()))
        .collect();
    assert!(
        !late.is_empty(),
        "demo/passive/bills.json has no bill with delay_ms above passive.timeout_ms {timeout}"
    );
    let walkthrough = read("docs/walkthrough.md");
    assert!(
        late.iter().any(|va| walkthrough.contains(va.as_str())),
        "docs/walkthrough.md shows none of the late-answering demo VAs {late:?}"
    );
}

#[test]
fn every_redis_we_run_fsyncs_every_write() {
    // Acknowledged payments are lost by a Redis crash otherwise (docs/operations.md, "Redis
    // persistence the switch depends on").
    for (file, needles) in [
        (
            "scripts/run-demo.sh",
            ["--appendonly yes", "--appendfsync always"],
        ),
        (
            "deploy/docker-compose.yml",
            [r#""--appendonly", "yes""#, r#""--appendfsync", "always""#],
        ),
    ] {
        let text = read(file);
        for n in needles {
            assert!(text.contains(n), "{file} runs Redis without {n}");
        }
        let config_lines = text.lines().filter(|l| !l.trim_start().starts_with('#'));
        for l in config_lines {
            assert!(
                !l.contains("everysec"),
                "{file} runs Redis with everysec: {l}"
            );
        }
    }
    let operations = read("docs/operations.md");
    assert!(operations.contains("\n## Redis persistence the switch depends on\n"));
    let deploy = read("deploy/README.md");
    assert!(
        deploy.contains("appendfsync always"),
        "deploy/README.md must tell Kubernetes users how Redis must persist"
    );
}

/// Every `kafka.KEY` and `redis.KEY` that src/secure.rs's module documentation names: a
/// row of the configuration table (docs/configuration.md); those of its paragraph on secrets
/// (refused in files) at least named in "Secured connections" (docs/operations.md). These
/// keys have no value in config/default.toml, so tests/readme.rs cannot see them.
#[test]
fn docs_document_every_security_key() {
    let doc: String = read("src/secure.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    // (key, named in the paragraph on secrets)
    let mut keys = BTreeSet::new();
    for paragraph in doc.split("\n\n") {
        let refused = paragraph.contains("refused");
        for section in ["kafka", "redis"] {
            for (i, _) in paragraph.match_indices(&format!("`{section}.")) {
                let key: String = paragraph[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                    .collect();
                keys.insert((key, refused));
            }
        }
    }
    assert!(
        keys.len() >= 12,
        "only {keys:?} found in src/secure.rs: is the parser broken?"
    );
    let configuration = read("docs/configuration.md");
    let operations = read("docs/operations.md");
    let start = operations
        .find("\n## Secured connections\n")
        .expect("docs/operations.md: ## Secured connections");
    let secured = &operations[start + 4..];
    let secured = &secured[..secured.find("\n## ").unwrap_or(secured.len())];
    for (key, refused) in &keys {
        let row = configuration.contains(&format!("\n| `{key}` |"));
        if *refused {
            assert!(
                row || secured.contains(&format!("`{key}`")),
                "docs/operations.md: {key} (refused, src/secure.rs) is not named in \
                 \"Secured connections\""
            );
        } else {
            assert!(
                row,
                "docs/configuration.md: {key} (src/secure.rs) is not a row of the \
                 configuration table"
            );
        }
    }
}
