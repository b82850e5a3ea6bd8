//! Tidy rules, run as plain tests by `cargo test --workspace` (rust-analyzer's `tidy.rs` habit).
//!
//! Each rule reads the tree as it is; a crate that does not exist yet is simply not checked.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::util::{manifest_features, manifest_section, workspace_root};

/// `crates/psm-*` packages that are not adapters; every other `psm-*` crate is one.
/// `psm-tables` is the engine the memory and file adapters share; it implements no port.
const NOT_ADAPTERS: [&str; 6] = [
    "psm-core",
    "psm-tables",
    "psm-jwt",
    "psm-http",
    "psm-cli",
    "psm-bench",
];

#[test]
fn every_adapter_runs_the_conformance_suite() {
    let mut problems = Vec::new();
    for dir in crate_dirs() {
        let name = dir_name(&dir);
        if !name.starts_with("psm-") || NOT_ADAPTERS.contains(&name.as_str()) {
            continue;
        }
        let path = dir.join("tests/conformance.rs");
        match fs::read_to_string(&path) {
            Ok(text) if invokes_suite_macro(&text) => {}
            Ok(_) => problems.push(format!(
                "{}: invokes no `psm_core::…_tests!` macro",
                rel(&path)
            )),
            Err(_) => problems.push(format!(
                "{}: missing (every adapter runs the conformance suite)",
                rel(&path)
            )),
        }
    }
    assert!(
        problems.is_empty(),
        "conformance suite not run:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_facade_feature_is_in_the_readme_table() {
    let Ok(manifest) = fs::read_to_string(workspace_root().join("crates/psm/Cargo.toml")) else {
        return;
    };
    let features = manifest_features(&manifest);
    if features.is_empty() {
        return;
    }
    let readme = fs::read_to_string(workspace_root().join("README.md")).unwrap_or_default();
    let missing: Vec<_> = features
        .iter()
        .filter(|f| !in_a_table(&readme, f))
        .collect();
    assert!(
        missing.is_empty(),
        "facade features missing from the README feature table \
         (a table cell that is the feature or holds it in backticks): {missing:?}"
    );
}

#[test]
fn only_the_facade_has_adapter_features() {
    let facade = workspace_root().join("crates/psm");
    let offenders: Vec<_> = members()
        .into_iter()
        .filter(|dir| *dir != facade)
        .filter(|dir| {
            let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
            manifest_section(&manifest, "features")
                .iter()
                .any(|line| line.contains("dep:psm-"))
        })
        .map(|dir| rel(&dir.join("Cargo.toml")))
        .collect();
    assert!(
        offenders.is_empty(),
        "only crates/psm may have `dep:psm-*` features: {offenders:?}"
    );
}

#[test]
fn no_ignored_tests_or_leftover_macros() {
    // Built at run time so this file does not match its own needles.
    let needles = [
        format!("#[{}", "ignore"),
        format!("#[{}", "should_panic"),
        format!("{}!(", "dbg"),
        format!("{}!(", "todo"),
        format!("{}!(", "unimplemented"),
    ];
    let mut hits = Vec::new();
    for top in ["crates", "xtask"] {
        for file in rust_files(&workspace_root().join(top)) {
            let Ok(text) = fs::read_to_string(&file) else {
                continue;
            };
            for (number, line) in text.lines().enumerate() {
                for needle in &needles {
                    if line.contains(needle.as_str()) {
                        hits.push(format!("{}:{}: {needle}", rel(&file), number + 1));
                    }
                }
            }
        }
    }
    assert!(hits.is_empty(), "forbidden markers:\n{}", hits.join("\n"));
}

#[test]
fn every_member_uses_the_workspace_lints() {
    let offenders: Vec<_> = members()
        .into_iter()
        .map(|dir| dir.join("Cargo.toml"))
        .filter(|manifest| {
            let text = fs::read_to_string(manifest).unwrap_or_default();
            !manifest_section(&text, "lints")
                .iter()
                .any(|line| line.split_whitespace().collect::<String>() == "workspace=true")
        })
        .map(|manifest| rel(&manifest))
        .collect();
    assert!(
        offenders.is_empty(),
        "manifests without `[lints] workspace = true`: {offenders:?}"
    );
}

#[test]
fn the_helpers_read_what_they_should() {
    assert!(invokes_suite_macro(
        "psm_core::permission_store_tests!(Fixture::new());"
    ));
    assert!(invokes_suite_macro(
        "use psm_core::cache_tests;\ncache_tests!(f);"
    ));
    assert!(!invokes_suite_macro("use psm_core::testkit;\nfn main() {}"));
    let readme =
        "| feature | default |\n|---|---|\n| `memory` (default) | yes |\n| redis | no |\nfull\n";
    assert!(in_a_table(readme, "memory") && in_a_table(readme, "redis"));
    assert!(!in_a_table(readme, "full") && !in_a_table(readme, "mem"));
    assert!(!members().is_empty());
}

/// Whether a test file invokes some `…_tests!` macro of `psm_core`.
fn invokes_suite_macro(text: &str) -> bool {
    text.contains("psm_core")
        && text.match_indices("_tests!").any(|(at, _)| {
            text[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Whether some Markdown table cell is `feature` (with or without backticks) or holds it in backticks,
/// so both a row per feature and a row of features (`` `memory` (default) ``) count.
fn in_a_table(markdown: &str, feature: &str) -> bool {
    let quoted = format!("`{feature}`");
    markdown
        .lines()
        .filter_map(|line| line.trim().strip_prefix('|'))
        .flat_map(|row| row.split('|'))
        .map(str::trim)
        .any(|cell| cell == feature || cell.contains(&quoted))
}

/// The workspace members, from the root manifest's `members` list (globs ending in `/*` expanded).
fn members() -> Vec<PathBuf> {
    let root = workspace_root();
    let manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
    let workspace = manifest_section(&manifest, "workspace").join("\n");
    let Some((_, after)) = workspace.split_once("members") else {
        return Vec::new();
    };
    let list = after
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .map_or("", |(list, _)| list);
    let mut dirs = Vec::new();
    for entry in list
        .split(',')
        .map(|e| e.trim().trim_matches('"'))
        .filter(|e| !e.is_empty())
    {
        match entry.strip_suffix("/*") {
            Some(parent) => dirs.extend(subdirs_with_manifest(&root.join(parent))),
            None if root.join(entry).join("Cargo.toml").is_file() => dirs.push(root.join(entry)),
            None => {}
        }
    }
    dirs
}

fn crate_dirs() -> Vec<PathBuf> {
    subdirs_with_manifest(&workspace_root().join("crates"))
}

fn subdirs_with_manifest(parent: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<_> = fs::read_dir(parent)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = dir_name(&path);
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                files.extend(rust_files(&path));
            }
        } else if name.ends_with(".rs") {
            files.push(path);
        }
    }
    files
}

fn dir_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn rel(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}
