//! A test, not code: the crate's modules (files) import each other without a cycle. It reads
//! the sources, takes every `crate::…` and `super::…` path (also inside `use …::{…}` groups,
//! through the parents' `pub use` re-exports and through module aliases such as
//! `use crate::phases;`), and fails naming the files of any strongly connected component.
//! Test modules (everything after a file's `#[cfg(test)]`) and comments are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// `src/phases/retry.rs` → `phases::retry`; `src/upstream/mod.rs` → `upstream`; `lib.rs` → `crate`.
fn module_of(relative: &Path) -> String {
    let text = relative
        .with_extension("")
        .to_string_lossy()
        .replace('\\', "/");
    let text = text.strip_suffix("/mod").unwrap_or(&text);
    match text {
        "lib" => "crate".to_string(),
        other => other.replace('/', "::"),
    }
}

fn read_sources(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let code: Vec<&str> = code
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .collect();
            out.insert(module_of(path.strip_prefix(root).unwrap()), code.join("\n"));
        }
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths that follow `prefix` in `code`: `a::b::c`, and for `a::{b, c::d}` each of
/// `a::b` and `a::c::d` (first level of the group only).
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        if code[..at].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        let len = rest
            .find(|c: char| !(is_ident(c) || c == ':'))
            .unwrap_or(rest.len());
        let path = rest[..len].trim_end_matches(':').to_string();
        if rest[len..].starts_with('{') && rest[..len].ends_with("::") {
            let group = &rest[len + 1..];
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let item: String = item
                    .trim()
                    .chars()
                    .take_while(|c| is_ident(*c) || *c == ':')
                    .collect();
                if !item.is_empty() && item != "self" {
                    found.push(format!("{path}::{item}"));
                }
            }
        } else if !path.is_empty() {
            found.push(path);
        }
    }
    found
}

/// The module graph of the crate whose files are `sources` (module path → code).
fn graph(sources: &BTreeMap<String, String>) -> Graph {
    let modules: BTreeSet<&str> = sources.keys().map(String::as_str).collect();
    // (module, name) → the child module a `pub use child::name` re-export points into.
    let mut reexports = BTreeMap::new();
    for (module, code) in sources {
        for prefix in ["pub use ", "pub(crate) use "] {
            for path in paths_after(code, prefix) {
                let mut parts = path.splitn(2, "::");
                let (Some(child), Some(names)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let child = match module.as_str() {
                    "crate" => child.to_string(),
                    m => format!("{m}::{child}"),
                };
                if modules.contains(child.as_str()) {
                    let name = names.split("::").next().unwrap_or(names);
                    reexports.insert((module.clone(), name.to_string()), child);
                }
            }
        }
    }
    let resolve = |path: &str| -> Option<String> {
        let parts: Vec<&str> = path.split("::").collect();
        for n in (1..parts.len()).rev() {
            let key = (parts[..n].join("::"), parts[n].to_string());
            if let Some(child) = reexports.get(&key) {
                return Some(child.clone());
            }
        }
        (1..=parts.len())
            .rev()
            .map(|n| parts[..n].join("::"))
            .find(|m| modules.contains(m.as_str()))
    };
    let mut graph = Graph::new();
    for (module, code) in sources {
        let parent = match module.rsplit_once("::") {
            Some((p, _)) => p.to_string(),
            None => "crate".to_string(),
        };
        let absolute = |relative: &str| match parent.as_str() {
            "crate" => relative.to_string(),
            p => format!("{p}::{relative}"),
        };
        let mut paths = paths_after(code, "crate::");
        paths.extend(paths_after(code, "super::").iter().map(|p| absolute(p)));
        // `use crate::phases;` makes `phases::x::y` a path into that module.
        let aliases: Vec<(String, String)> = paths
            .iter()
            .filter(|p| modules.contains(p.as_str()))
            .filter_map(|p| Some((p.rsplit("::").next()?.to_string(), p.clone())))
            .collect();
        for (alias, target) in aliases {
            let prefix = format!("{alias}::");
            let via = paths_after(code, &prefix);
            paths.extend(via.iter().map(|p| format!("{target}::{p}")));
        }
        let edges = graph.entry(module.clone()).or_default();
        for path in paths {
            if let Some(to) = resolve(&path).filter(|to| to != module && to != "crate") {
                edges.insert(to);
            }
        }
    }
    graph
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(w: &mut Walk<'g>, v: &'g str) {
        let i = w.index.len();
        w.index.insert(v, i);
        w.low.insert(v, i);
        w.stack.push(v);
        for to in w.graph.get(v).into_iter().flatten() {
            if !w.index.contains_key(to.as_str()) {
                visit(w, to);
                let low = w.low[v].min(w.low[to.as_str()]);
                w.low.insert(v, low);
            } else if w.stack.contains(&to.as_str()) {
                let low = w.low[v].min(w.index[to.as_str()]);
                w.low.insert(v, low);
            }
        }
        if w.low[v] == w.index[v] {
            let mut component = Vec::new();
            while let Some(m) = w.stack.pop() {
                component.push(m.to_string());
                if m == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                w.found.push(component);
            }
        }
    }
    let mut w = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !w.index.contains_key(v.as_str()) {
            visit(&mut w, v);
        }
    }
    w.found
}

#[test]
fn the_proxy_modules_import_each_other_without_a_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = BTreeMap::new();
    read_sources(&root, &root, &mut sources);
    let graph = graph(&sources);
    assert!(graph["body"].is_empty(), "body imports {:?}", graph["body"]);
    assert!(graph["phases::upstream"].contains("phases::retry"));
    assert!(graph["upstream::pool"].contains("upstream::server"));
    let found = cycles(&graph);
    assert!(found.is_empty(), "module cycles: {found:?}");
}

#[test]
fn a_cycle_through_a_reexport_or_an_alias_is_found() {
    let sources: BTreeMap<String, String> = [
        ("crate", "mod a; mod b; mod c;"),
        ("a", "mod x; pub(crate) use x::{Thing, Other};"),
        ("a::x", "use crate::b::Helper;"),
        ("b", "use crate::c; fn f() { c::deep::g() }"),
        ("c", "pub mod deep;"),
        ("c::deep", "use crate::a::{Thing};"),
    ]
    .into_iter()
    .map(|(m, code)| (m.to_string(), code.to_string()))
    .collect();
    let found = cycles(&graph(&sources));
    assert_eq!(found, [["a::x", "b", "c::deep"]]);
}
