//! The README lists every metric and every configuration key, so it cannot fall behind.

#[test]
fn readme_lists_every_metric_and_config_key() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for (name, _) in ipg_switch::metrics::ALL {
        assert!(
            readme.contains(&format!("`{name}`")),
            "README misses metric {name}"
        );
    }
    let defaults: toml::Table = ipg_switch::settings::DEFAULT_TOML.parse().unwrap();
    for (section, v) in &defaults {
        let Some(t) = v.as_table() else { continue };
        for key in t.keys() {
            assert!(
                readme.contains(&format!("`{section}.{key}`"))
                    || readme.contains(&format!("`{key}`")),
                "README misses config key {section}.{key}"
            );
        }
    }
}
