//! The layout's rules, checked on the source: no cycle between the top-level modules of
//! `src/` (folders and files), and a `domain/` without I/O. A new `use crate::…` that closes a
//! cycle fails here with the path of the cycle and the files that make each step.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Top-level module -> modules it uses -> files where it does.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its unit tests (`#[cfg(test)] mod tests`), which may reach
/// anywhere.
fn without_tests(code: &str) -> &str {
    match code.find("#[cfg(test)]\nmod tests") {
        Some(i) => &code[..i],
        None => code,
    }
}

/// Every `crate::<name>` a file refers to, including the names inside `use crate::{a, b::c}`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        // `$crate::` in macros is the same crate.
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Items at the group's top level; a nested `{...}` belongs to the item before it.
            let mut depth = 0;
            let mut item_start = 0;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        refs.insert(ident(group[item_start..j].trim()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        refs.insert(ident(group[item_start..j].trim()));
                        item_start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                refs.insert(name);
            }
        }
    }
    refs.remove("");
    refs
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let top = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_owned();
        // The binaries and the crate root sit above the layers.
        if ["bin", "main", "lib"].contains(&top.as_str()) {
            continue;
        }
        let code = fs::read_to_string(&file).unwrap();
        for target in crate_refs(without_tests(&code)) {
            if target != top {
                graph
                    .entry(top.clone())
                    .or_default()
                    .entry(target)
                    .or_default()
                    .insert(rel.clone());
            }
        }
    }
    graph
}

/// A cycle through `start`, if any, as the list of modules along it.
fn cycle_from(graph: &Graph, start: &str) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        node: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(node).into_iter().flat_map(|m| m.keys()) {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if visit(graph, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    let mut seen = BTreeSet::new();
    visit(graph, start, start, &mut path, &mut seen).then(|| {
        path.push(start.to_owned());
        path
    })
}

#[test]
fn no_cycle_between_top_level_modules() {
    let graph = graph();
    let mut report = Vec::new();
    for start in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, start) {
            let steps: Vec<String> = cycle
                .windows(2)
                .map(|w| format!("  {} -> {} in {:?}", w[0], w[1], graph[&w[0]][&w[1]]))
                .collect();
            report.push(format!("{}\n{}", cycle.join(" -> "), steps.join("\n")));
        }
    }
    assert!(
        report.is_empty(),
        "cycles between modules:\n{}",
        report.join("\n\n")
    );
}

#[test]
fn domain_has_no_io() {
    let graph = graph();
    let uses: Vec<&String> = graph
        .get("domain")
        .into_iter()
        .flat_map(|m| m.keys())
        .collect();
    assert!(uses.is_empty(), "domain/ uses {uses:?}");
    let domain = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/domain");
    let mut files = Vec::new();
    rust_files(&domain, &mut files);
    for file in files {
        let code = fs::read_to_string(&file).unwrap();
        for io in [
            "tokio",
            "sqlx",
            "reqwest",
            "redis::",
            "std::fs",
            "std::net",
            "std::process",
        ] {
            assert!(
                !without_tests(&code).contains(io),
                "{} uses {io}",
                file.display()
            );
        }
    }
}

#[test]
fn the_checker_sees_a_cycle() {
    let mut g = Graph::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        g.entry(a.into())
            .or_default()
            .entry(b.into())
            .or_default()
            .insert("f.rs".into());
    }
    assert_eq!(cycle_from(&g, "a").unwrap(), ["a", "b", "c", "a"]);
    assert!(cycle_from(&g, "d").is_none());
    assert_eq!(
        crate_refs("use crate::{store::{A, B}, bus::C};\nlet x = crate::clock::now();"),
        ["bus", "clock", "store"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}
