//! The broker's shape (docs/decisions/0010-broker-rooms.md): no import circle between its files
//! and no file over the size limit. Reads the sources; runs no node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A file past this many lines has more than one job.
const FILE_LINES_MAX: usize = 400;

/// Every `.rs` file under `src/`, by module path (`services::fetch`, `tasks` for `tasks/mod.rs`).
fn modules() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                let mut inner = prefix.to_vec();
                inner.push(name);
                walk(&path, &inner, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut parts = prefix.to_vec();
                if name != "mod" {
                    parts.push(name);
                }
                out.insert(parts.join("::"), path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &[], &mut out);
    out
}

/// The modules a file names through `crate::` paths: for each path, the longest prefix that is
/// a module of the crate (`crate::services::fetch::X` names `services::fetch`).
fn imports(source: &str, modules: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in source.match_indices("crate::") {
        let rest = &source[at + "crate::".len()..];
        let path: String =
            rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
        let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        if let Some(module) =
            (1..=segments.len()).rev().map(|n| segments[..n].join("::")).find(|m| modules.contains_key(m))
        {
            out.insert(module);
        }
    }
    // `use crate::{a, b}` groups name several modules at once.
    for (at, _) in source.match_indices("use crate::{") {
        let rest = &source[at + "use crate::{".len()..];
        let group = &rest[..rest.find('}').unwrap_or(rest.len())];
        for item in group.split(',') {
            let first = item.trim().split("::").next().unwrap_or("");
            if modules.contains_key(first) {
                out.insert(first.to_string());
            }
        }
    }
    out
}

/// A cycle in `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    modules
        .iter()
        // The crate root declares and re-exports; `main` uses the crate from outside.
        .filter(|(name, _)| *name != "lib" && *name != "main")
        .map(|(name, path)| {
            let mut names = imports(&std::fs::read_to_string(path).unwrap(), &modules);
            names.remove(name);
            (name.clone(), names)
        })
        .collect()
}

#[test]
fn the_broker_has_no_import_circle() {
    let graph = import_graph();
    assert!(graph.contains_key("node") && graph.contains_key("services::produce"), "{graph:?}");
    assert!(graph["start"].contains("node"), "the reader sees start's imports: {:?}", graph["start"]);
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import circle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_a_circle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["c".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
    ]
    .into_iter()
    .collect();
    assert_eq!(find_cycle(&graph).unwrap(), vec!["a", "b", "c", "a"]);
    let modules: BTreeMap<String, PathBuf> =
        ["node", "services::fetch"].iter().map(|m| ((*m).to_string(), PathBuf::new())).collect();
    let names = imports("use crate::services::fetch::X;\nuse crate::{node::Node, sync};", &modules);
    assert_eq!(names, BTreeSet::from(["node".to_string(), "services::fetch".to_string()]));
}

#[test]
fn no_broker_file_is_over_the_size_limit() {
    let long: Vec<String> = modules()
        .into_iter()
        .filter_map(|(name, path)| {
            let lines = std::fs::read_to_string(&path).unwrap().lines().count();
            (lines > FILE_LINES_MAX).then(|| format!("{name}: {lines} lines"))
        })
        .collect();
    assert!(long.is_empty(), "files over {FILE_LINES_MAX} lines: {long:?}");
}
