//! docs/configuration.md lists every metric and every configuration key, so it cannot fall
//! behind. (The README's configuration and metrics tables moved there; the README links it.)

#[test]
fn configuration_doc_lists_every_metric_and_config_key() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    for (name, _) in ipg_switch::metrics::ALL {
        assert!(
            doc.contains(&format!("`{name}`")),
            "docs/configuration.md misses metric {name}"
        );
    }
    let defaults: toml::Table = ipg_switch::settings::DEFAULT_TOML.parse().unwrap();
    for (section, v) in &defaults {
        let Some(t) = v.as_table() else { continue };
        for key in t.keys() {
            assert!(
                doc.contains(&format!("`{section}.{key}`")) || doc.contains(&format!("`{key}`")),
                "docs/configuration.md misses config key {section}.{key}"
            );
        }
    }
}
