//! The configuration examples in the user guide (docs/guide/src/configuration.md) are real:
//! they parse, validate and say what the defaults are.

use std::path::Path;

use tinylcm::config::Config;
use tinylcm::model::ModelManifest;

fn configuration_chapter() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/guide/src/configuration.md");
    std::fs::read_to_string(path).expect("the guide's configuration chapter in the workspace")
}

/// The first ```toml block after `marker`.
fn toml_block_after(text: &str, marker: &str) -> String {
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("the configuration chapter lacks `{marker}`"));
    let open = start + text[start..].find("```toml\n").expect("a toml block") + "```toml\n".len();
    let close = open + text[open..].find("```").expect("a closed block");
    text[open..close].to_string()
}

#[test]
fn the_complete_config_example_is_the_defaults() {
    let example = toml_block_after(&configuration_chapter(), "A complete example");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("example.toml");
    std::fs::write(&file, example).unwrap();
    let mut parsed = Config::load(Some(&file)).unwrap();
    // The one value the example sets for illustration.
    assert_eq!(parsed.source.directory.path, Path::new("/data/images"));
    parsed.source.directory.path = Default::default();
    assert_eq!(parsed, Config::default());
}

#[test]
fn the_manifest_example_parses() {
    let example = toml_block_after(&configuration_chapter(), "**Model manifest.**");
    let example = example.replace("<sha-256 of my.tflite>", &"ab".repeat(32));
    let manifest = ModelManifest::parse(&example, Path::new("configuration.md")).unwrap();
    assert_eq!(manifest.labels.len(), 4);
}
