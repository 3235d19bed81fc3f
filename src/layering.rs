//! Checks the crate's module graph from its source: the pure cores import
//! no I/O module, and no two top-level modules import each other, directly
//! or around a loop (see the layout in the crate docs).
//!
//! Reads `crate::` paths in code (the tree's convention; comments and doc
//! lines are skipped, since a doc link is not a dependency). Must stay a
//! test: nothing here is part of the library.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers that must not do I/O: they may import each other, never
/// these.
const PURE: &[&str] = &["syscall", "proto", "engine", "config", "errno", "fastpath"];
/// The I/O drivers.
const IO: &[&str] = &["tracer", "client", "transport", "server", "sys", "logging"];

/// Where one module's code names another: each file, with its first line
/// that does.
#[derive(Debug, Clone, Default)]
struct Evidence(BTreeMap<PathBuf, usize>);

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let places: Vec<String> = self
            .0
            .iter()
            .map(|(file, line)| format!("src/{}:{line}", file.display()))
            .collect();
        f.write_str(&places.join(", "))
    }
}

/// `from → to → where`, among top-level modules.
type Graph = BTreeMap<String, BTreeMap<String, Evidence>>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The crate's top-level modules: `src/NAME.rs` and `src/NAME/`, except
/// the crate root, the binaries and this test.
fn top_level_modules(src: &Path) -> BTreeSet<String> {
    let own = module_path!().rsplit("::").next().unwrap_or_default();
    std::fs::read_dir(src)
        .expect("read src/")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().into_string().ok()?;
            let module = match name.strip_suffix(".rs") {
                Some(stem) => stem.to_owned(),
                None if entry.path().is_dir() => name,
                None => return None,
            };
            (!["lib", "main", "bin", own].contains(&module.as_str())).then_some(module)
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read a source directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `line` without its comment: everything from a `//` outside a string.
fn code_of(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
        i += 1;
    }
    line
}

fn ident_at(code: &str) -> &str {
    let end = code
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(code.len());
    &code[..end]
}

/// The top-level modules that `code` (one file's code, comments removed)
/// names through `crate::NAME` or `crate::{NAME, ..}`.
fn referenced_modules(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        // `rscq_crate::x` or `my_crate::x` is not this crate.
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The names at the group's top level.
            let mut depth = 0usize;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start && depth == 0 => {
                        start = false;
                        found.push((line, ident_at(&group[i..]).to_owned()));
                    }
                    _ => {}
                }
            }
        } else {
            found.push((line, ident_at(rest).to_owned()));
        }
    }
    found
}

/// The module graph of the tree under `src`.
fn module_graph(src: &Path) -> Graph {
    let modules = top_level_modules(src);
    let mut graph = Graph::new();
    for module in &modules {
        let mut files = Vec::new();
        let dir = src.join(module);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
        let file = src.join(format!("{module}.rs"));
        if file.is_file() {
            files.push(file);
        }
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read a source file");
            let code: String = text.lines().map(|l| code_of(l).to_owned() + "\n").collect();
            for (line, to) in referenced_modules(&code) {
                if &to == module || !modules.contains(&to) {
                    continue;
                }
                let relative = file.strip_prefix(src).unwrap_or(&file).to_path_buf();
                graph
                    .entry(module.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .0
                    .entry(relative)
                    .or_insert(line);
            }
        }
    }
    graph
}

/// Every edge from a pure layer into an I/O module, as a message.
fn pure_into_io(graph: &Graph) -> Vec<String> {
    let mut wrong = Vec::new();
    for from in PURE {
        for (to, at) in graph.get(*from).into_iter().flatten() {
            if IO.contains(&to.as_str()) {
                wrong.push(format!("pure `{from}` imports I/O module `{to}`: {at}"));
            }
        }
    }
    wrong
}

/// A cycle of the graph, as the modules along it (first repeated at the
/// end), if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        OnPath,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_owned(), Mark::OnPath);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
            match marks.get(next) {
                Some(Mark::OnPath) => {
                    let start = path.iter().position(|m| m == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(cycle) = visit(next, graph, marks, path) {
                        return Some(cycle);
                    }
                }
            }
        }
        path.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if !marks.contains_key(node) {
            let mut path = Vec::new();
            if let Some(cycle) = visit(node, graph, &mut marks, &mut path) {
                return Some(cycle);
            }
        }
    }
    None
}

/// The cycle's edges with where each is made.
fn describe_cycle(graph: &Graph, cycle: &[String]) -> String {
    let mut text = format!("import cycle {}:", cycle.join(" -> "));
    for pair in cycle.windows(2) {
        if let Some(at) = graph.get(&pair[0]).and_then(|edges| edges.get(&pair[1])) {
            text += &format!("\n  {} -> {}: {at}", pair[0], pair[1]);
        }
    }
    text
}

#[test]
fn pure_layers_import_no_io_module() {
    let graph = module_graph(&src_dir());
    let wrong = pure_into_io(&graph);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn top_level_modules_form_no_cycle() {
    let graph = module_graph(&src_dir());
    if let Some(cycle) = find_cycle(&graph) {
        panic!("{}", describe_cycle(&graph, &cycle));
    }
}

#[test]
fn the_graph_sees_every_layer() {
    // Guards the two tests above against reading nothing.
    let modules = top_level_modules(&src_dir());
    for module in PURE.iter().chain(IO) {
        assert!(modules.contains(*module), "no module `{module}` in src/");
    }
    let graph = module_graph(&src_dir());
    assert!(
        graph
            .get("client")
            .is_some_and(|e| e.contains_key("engine"))
    );
}

#[test]
fn references_are_read_from_code_only() {
    let code = "use crate::{proto::Request, errno};\n\
                let x = \"crate::tracer // not code\"; // crate::client\n\
                other_crate::server::x(); crate::sys::y();\n";
    let code: String = code.lines().map(|l| code_of(l).to_owned() + "\n").collect();
    let names: Vec<(usize, String)> = referenced_modules(&code);
    assert_eq!(
        names,
        [
            (1, "proto".to_owned()),
            (1, "errno".to_owned()),
            (2, "tracer".to_owned()),
            (3, "sys".to_owned()),
        ]
    );
}

#[test]
fn a_cycle_is_found_and_named() {
    let at = |f: &str| Evidence(BTreeMap::from([(PathBuf::from(f), 1)]));
    let mut graph = Graph::new();
    graph
        .entry("a".into())
        .or_default()
        .insert("b".into(), at("a.rs"));
    graph
        .entry("b".into())
        .or_default()
        .insert("c".into(), at("b.rs"));
    assert_eq!(find_cycle(&graph), None);
    graph
        .entry("c".into())
        .or_default()
        .insert("a".into(), at("c/x.rs"));
    let cycle = find_cycle(&graph).expect("a cycle");
    assert_eq!(cycle, ["a", "b", "c", "a"]);
    assert!(describe_cycle(&graph, &cycle).contains("c -> a: src/c/x.rs:1"));
}
