//! The shape of `src/`, checked on every test run so it stays the shape a newcomer can hold in
//! their head (DEVELOPMENT.md):
//! - no function over 80 lines (`main.rs` included), no file over 600 lines (test modules
//!   excepted);
//! - no import cycle among the library's top-level modules, nor among the files of any module:
//!   every `crate::x` or `super::x` reference (in `use`, paths and macro bodies alike, test
//!   modules excepted) is an edge;
//! - the layering, as data ([`PURE`]): the pure modules (the decision and what it reads) never
//!   reach the I/O ones;
//! - a small front door: at most [`MAX_PUB_MODS`] public modules in `lib.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::visit::Visit;

const MAX_FN_LINES: usize = 80;
const MAX_FILE_LINES: usize = 600;
/// What the binary, the stand-in, the fuzz targets and the tests may name by module; the rest of
/// their vocabulary is re-exported at the crate root.
const MAX_PUB_MODS: usize = 10;

/// The pure layer: the decision (`pod + identity + access + launch context + policy → patch`)
/// and the vocabulary it reads. They may refer to one another and to `timeouts` (constants);
/// everything else (servers, clients, files, metrics, the wiring) is I/O and may refer to them.
const PURE: &[&str] = &[
    "access", "archive", "classify", "echo", "identity", "launch", "mutation", "names", "pod",
    "policy", "quantity", "review", "sharing", "warning", "version",
];

/// A library source file and its module path (`["xnat", "client"]` for `src/xnat/client/mod.rs`).
struct Source {
    path: PathBuf,
    module: Vec<String>,
    text: String,
    ast: syn::File,
}

fn sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path.strip_prefix(&src).unwrap();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let mut module: Vec<String> = relative
                .with_extension("")
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|m| m == "mod" || m == "lib") {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let ast = syn::parse_file(&text)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
            out.push(Source {
                path,
                module,
                text,
                ast,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

/// A file that only holds tests (`#[cfg(test)] mod tests;` in its parent).
fn is_test_file(s: &Source) -> bool {
    s.module.last().is_some_and(|m| m == "tests")
}

/// Functions longer than the limit, outside test modules.
struct LongFunctions<'a> {
    file: &'a Path,
    found: Vec<String>,
}

impl LongFunctions<'_> {
    fn check(&mut self, name: &syn::Ident, sig: &syn::Signature, block: &syn::Block) {
        let lines = block.span().end().line - sig.span().start().line + 1;
        if lines > MAX_FN_LINES {
            self.found.push(format!(
                "{}: fn {name} has {lines} lines",
                self.file.display()
            ));
        }
    }
}

impl<'ast> Visit<'ast> for LongFunctions<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_cfg_test(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.check(&f.sig.ident, &f.sig, &f.block);
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.check(&f.sig.ident, &f.sig, &f.block);
        syn::visit::visit_impl_item_fn(self, f);
    }
}

#[test]
fn no_function_over_80_lines_and_no_file_over_600() {
    let mut problems = Vec::new();
    for s in sources() {
        if is_test_file(&s) {
            continue;
        }
        let mut long = LongFunctions {
            file: &s.path,
            found: Vec::new(),
        };
        long.visit_file(&s.ast);
        problems.extend(long.found);
        let test_lines: usize = s
            .ast
            .items
            .iter()
            .filter_map(|item| match item {
                syn::Item::Mod(m) if is_cfg_test(&m.attrs) => {
                    Some(m.span().end().line - m.span().start().line + 1)
                }
                _ => None,
            })
            .sum();
        let lines = s.text.lines().count() - test_lines;
        if lines > MAX_FILE_LINES {
            problems.push(format!(
                "{} has {lines} lines besides its tests",
                s.path.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The top-level modules a file refers to through `crate::x` or `super::…::x`: the first name
/// of each path it names ([`paths`]).
fn references(s: &Source, top_level: &BTreeSet<String>) -> BTreeSet<String> {
    paths(s)
        .into_iter()
        .filter_map(|p| p.into_iter().next())
        .filter(|m| top_level.contains(m))
        .collect()
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_library_modules_form_no_cycle() {
    let sources = sources();
    let top_level: BTreeSet<String> = sources
        .iter()
        .filter_map(|s| s.module.first().cloned())
        .filter(|m| m != "main")
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in &sources {
        let Some(top) = s.module.first() else {
            continue; // lib.rs only declares the modules
        };
        if top == "main" {
            continue; // the binary is not part of the library's graph
        }
        let edges = graph.entry(top.clone()).or_default();
        edges.extend(references(s, &top_level).into_iter().filter(|m| m != top));
    }
    // The check must see the graph: a scan that finds nothing would pass anything.
    assert!(graph["admission"].contains("mutation"), "{graph:?}");
    assert!(graph["xnat"].contains("metrics"), "{graph:?}");
    assert!(graph["metrics"].is_empty(), "metrics is a leaf: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}\n{graph:#?}", cycle.join(" -> "));
    }
}

/// Every module path a file refers to through `crate::…` or `super::…`, made absolute
/// (`super::plan::X` in `mutation/roots.rs` is `["mutation", "plan", "X"]`).
fn paths(s: &Source) -> BTreeSet<Vec<String>> {
    let mut ast = s.ast.clone();
    ast.items.retain(|item| match item {
        syn::Item::Mod(m) => !is_cfg_test(&m.attrs),
        _ => true,
    });
    let mut found = BTreeSet::new();
    scan_paths(&ast.to_token_stream(), &s.module, &mut found);
    found
}

fn scan_paths(tokens: &TokenStream, module: &[String], found: &mut BTreeSet<Vec<String>>) {
    let tokens: Vec<TokenTree> = tokens.clone().into_iter().collect();
    let ident = |i: usize| match tokens.get(i) {
        Some(TokenTree::Ident(id)) => Some(id.to_string()),
        _ => None,
    };
    let is_path_sep = |i: usize| {
        matches!((tokens.get(i), tokens.get(i + 1)),
            (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) if a.as_char() == ':' && b.as_char() == ':')
    };
    let mut i = 0;
    while i < tokens.len() {
        if let TokenTree::Group(g) = &tokens[i] {
            scan_paths(&g.stream(), module, found);
        }
        let (mut path, mut j) = match ident(i).as_deref() {
            Some("crate") if is_path_sep(i + 1) => (Vec::new(), i + 3),
            Some("super") if is_path_sep(i + 1) => {
                let mut base = module.to_vec();
                let mut j = i;
                while ident(j).as_deref() == Some("super") && is_path_sep(j + 1) {
                    base.pop();
                    j += 3;
                }
                (base, j)
            }
            _ => {
                i += 1;
                continue;
            }
        };
        while let Some(name) = ident(j) {
            path.push(name);
            if !is_path_sep(j + 1) {
                break;
            }
            j += 3;
        }
        if let Some(TokenTree::Group(g)) = tokens.get(j)
            && g.delimiter() == Delimiter::Brace
        {
            // `crate::m::{a::X, b}`: each item's first name under the prefix.
            let mut first = true;
            for t in g.stream() {
                match t {
                    TokenTree::Ident(id) if first => {
                        let mut item = path.clone();
                        item.push(id.to_string());
                        found.insert(item);
                        first = false;
                    }
                    TokenTree::Punct(p) if p.as_char() == ',' => first = true,
                    _ => {}
                }
            }
        }
        found.insert(path);
        i = j.max(i + 1);
    }
}

#[test]
fn the_files_of_each_module_form_no_cycle() {
    // For each module, a graph of its children (files or directories): `a -> b` when a file in
    // `a` names something in `b` by path.
    let mut graphs: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for s in sources().iter().filter(|s| !is_test_file(s)) {
        if s.module.first().is_some_and(|m| m == "main") {
            continue;
        }
        for path in paths(s) {
            for level in 1..s.module.len() {
                let (parent, node) = (&s.module[..level], &s.module[level]);
                if path.len() > level && path[..level] == *parent && path[level] != *node {
                    let graph = graphs.entry(parent.to_vec()).or_default();
                    graph
                        .entry(node.clone())
                        .or_default()
                        .insert(path[level].clone());
                }
            }
        }
    }
    // The check must see the graph.
    let mutation = &graphs[&vec!["mutation".to_owned()]];
    assert!(mutation["roots"].contains("planned"), "{mutation:?}");
    for (module, graph) in &graphs {
        if let Some(cycle) = find_cycle(graph) {
            panic!(
                "import cycle in {}: {}",
                module.join("::"),
                cycle.join(" -> ")
            );
        }
    }
}

#[test]
fn the_pure_modules_never_reach_the_io_ones() {
    let sources = sources();
    let top_level: BTreeSet<String> = sources
        .iter()
        .filter_map(|s| s.module.first().cloned())
        .filter(|m| m != "main")
        .collect();
    for pure in PURE {
        assert!(top_level.contains(*pure), "{pure} is not a module of src/");
    }
    let mut wrong = Vec::new();
    for s in sources.iter().filter(|s| !is_test_file(s)) {
        let Some(top) = s.module.first().filter(|m| PURE.contains(&m.as_str())) else {
            continue;
        };
        for to in references(s, &top_level) {
            if to != *top && !PURE.contains(&to.as_str()) && to != "timeouts" {
                wrong.push(format!("{} -> {to}", s.path.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the pure layer reaches I/O:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_front_door_is_at_most_ten_public_modules() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("read src/lib.rs");
    let file = syn::parse_file(&lib).expect("parse src/lib.rs");
    let public: Vec<String> = file
        .items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Mod(m) if matches!(m.vis, syn::Visibility::Public(_)) => {
                Some(m.ident.to_string())
            }
            _ => None,
        })
        .collect();
    assert!(
        public.len() <= MAX_PUB_MODS,
        "{} public modules in lib.rs (at most {MAX_PUB_MODS}): {public:?}; make it `mod` and \
         re-export what callers need",
        public.len()
    );
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
}
