//! The floors of the crate, checked from its source: every module may import only from the
//! floors below its own, so there is no import cycle and no import that goes up. Run it alone
//! with `cargo test --test it layers`.
//!
//! Test modules (`#[cfg(test)] mod …` at the end of a file) are left out: they are not part of
//! the engine's build, and may borrow any helper.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every top-level module of `src/`, bottom floor first. `docs/ARCHITECTURE.md` walks the
/// same list.
const FLOORS: &[(&str, u32)] = &[
    // The ground floor: the event format, every metric, the clock, RNG and worker context.
    ("event", 0),
    ("metrics", 1),
    ("runtime", 2),
    // The one constructor of Kafka clients, and what every node kind is.
    ("kafka", 3),
    ("component", 4),
    // The data path: each node kind with its config, its checks and its build.
    ("sources", 5),
    ("operators", 6),
    ("sinks", 7),
    // The pipeline file and its graph, then the wiring of a graph into a dataflow.
    ("config", 8),
    ("pipeline", 9),
    // Outside the engine, each behind a cargo feature: the gateway; the demo, load generator,
    // verifier and benchmarks; and the analysis, which reads topics through the tools.
    ("gateway", 10),
    ("tools", 10),
    ("analysis", 11),
];

fn floor(module: &str) -> u32 {
    FLOORS
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("module `{module}` has no floor: add it to FLOORS"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading src") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comments and without a trailing test module.
fn engine_code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .iter()
        .enumerate()
        .position(|(i, l)| {
            l.trim() == "#[cfg(test)]"
                && lines
                    .get(i + 1)
                    .is_some_and(|n| n.trim_start().starts_with("mod "))
        })
        .unwrap_or(lines.len());
    lines[..end]
        .iter()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The other top-level modules each top-level module names through `crate::`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a path");
        let top = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let code = engine_code(&std::fs::read_to_string(&file).expect("reading a source file"));
        let deps = graph.entry(top.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let name: String = code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if name != top && !name.is_empty() {
                deps.insert(name);
            }
        }
    }
    graph
}

#[test]
fn no_module_imports_from_a_floor_above_or_beside_its_own() {
    let graph = imports();
    let mut wrong = Vec::new();
    for (module, deps) in &graph {
        for dep in deps {
            if floor(dep) >= floor(module) {
                wrong.push(format!(
                    "{module} (floor {}) imports {dep} (floor {})",
                    floor(module),
                    floor(dep)
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the floors:\n{}",
        wrong.join("\n")
    );
    // Every module of src/ is placed, so a new one cannot slip past the check.
    for module in graph.keys() {
        floor(module);
    }
}

#[test]
fn the_module_graph_has_no_cycle() {
    fn visit<'a>(
        at: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<String> {
        if let Some(i) = path.iter().position(|m| *m == at) {
            return Some(format!("{} -> {at}", path[i..].join(" -> ")));
        }
        if !done.insert(at) {
            return None;
        }
        path.push(at);
        for dep in graph.get(at).into_iter().flatten() {
            if let Some(cycle) = visit(dep, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let graph = imports();
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {cycle}");
        }
    }
}

/// The checker itself sees an import that goes up, so a passing run means something.
#[test]
fn the_layer_check_sees_an_upward_import() {
    let code = engine_code(
        "use crate::pipeline::run; // crate::sinks in a comment\n#[cfg(test)]\nmod tests {\n    use crate::tools::bench::x;\n}\n",
    );
    assert!(code.contains("crate::pipeline"));
    assert!(!code.contains("crate::sinks"), "comments are not imports");
    assert!(
        !code.contains("crate::tools::bench"),
        "test modules are left out"
    );
    assert!(floor("pipeline") > floor("event"));
}
