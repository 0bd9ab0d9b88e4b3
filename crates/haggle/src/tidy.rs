//! Tidy checks (in the spirit of rust-analyzer's): what ARCHITECTURE.md and the README say that a
//! machine can check. Crate edges against `cargo metadata`, a `//!` doc atop every module, the
//! examples parse, the README's `haggle ...` lines parse with the CLI, no stubs left in, no
//! function over [`MAX_FN_LINES`] lines but the allowlisted ones.

use clap::Parser;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every file under `dir` whose name ends with `ext`, sorted.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.to_string_lossy().ends_with(ext) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn rel(p: &Path) -> String {
    let root = root().canonicalize().expect("workspace root");
    let p = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    p.strip_prefix(&root).unwrap_or(&p).display().to_string()
}

/// The crate map ARCHITECTURE.md writes after the `tidy:crate-edges` marker: `crate: dep dep ...`.
fn documented_edges(doc: &str) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let start = doc
        .find("<!-- tidy:crate-edges -->")
        .ok_or("ARCHITECTURE.md has no `<!-- tidy:crate-edges -->` marker")?;
    let block = doc[start..]
        .split("```")
        .nth(1)
        .ok_or("no fenced block after the crate-edges marker")?;
    let mut map = BTreeMap::new();
    for line in block.lines().skip(1) {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (name, deps) = line
            .split_once(':')
            .ok_or_else(|| format!("crate map line without `:`: {line}"))?;
        let deps = deps.split_whitespace().map(str::to_string).collect();
        if map.insert(name.trim().to_string(), deps).is_some() {
            return Err(format!("crate {name} is listed twice in the crate map"));
        }
    }
    Ok(map)
}

/// The normal (not dev, not build) dependencies between the workspace's own crates.
fn cargo_edges() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let ours: BTreeSet<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|d| ours.contains(*d))
                .map(str::to_string)
                .collect();
            (p["name"].as_str().expect("name").to_string(), deps)
        })
        .collect()
}

/// The differences between two crate maps, one line each (empty when they agree).
fn edge_differences(
    documented: &BTreeMap<String, BTreeSet<String>>,
    actual: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut out = Vec::new();
    let names: BTreeSet<&String> = documented.keys().chain(actual.keys()).collect();
    for name in names {
        match (documented.get(name), actual.get(name)) {
            (None, _) => out.push(format!("{name}: a crate the map does not list")),
            (_, None) => out.push(format!(
                "{name}: listed in the map but not a workspace crate"
            )),
            (Some(doc), Some(real)) => {
                for d in real.difference(doc) {
                    out.push(format!("{name} → {d}: in Cargo.toml, not in the map"));
                }
                for d in doc.difference(real) {
                    out.push(format!("{name} → {d}: in the map, not in Cargo.toml"));
                }
            }
        }
    }
    out
}

#[test]
fn crate_edges_match_the_architecture_map() {
    let documented = documented_edges(&read(&root().join("ARCHITECTURE.md"))).unwrap();
    let wrong = edge_differences(&documented, &cargo_edges());
    assert!(
        wrong.is_empty(),
        "ARCHITECTURE.md's crate map and Cargo disagree:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_testkit_is_a_dev_dependency_only() {
    for (name, deps) in cargo_edges() {
        assert!(
            !deps.contains("haggle-testkit"),
            "{name} depends on haggle-testkit outside [dev-dependencies]"
        );
    }
}

/// Files another file `include!`s: they cannot hold an inner doc (`//!`), so they open with a
/// plain `//` comment saying where they are included.
fn included_files(sources: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for f in sources {
        let text = read(f);
        for part in text.split("include!(\"").skip(1) {
            if let Some((name, _)) = part.split_once('"') {
                let p = f.parent().expect("a file has a folder").join(name);
                if let Ok(p) = p.canonicalize() {
                    out.insert(p);
                }
            }
        }
    }
    out
}

/// The modules that do not open with a `//!` doc (or, for an included file, a `//` comment).
fn modules_without_doc(sources: &[PathBuf]) -> Vec<String> {
    let included = included_files(sources);
    sources
        .iter()
        .filter(|f| {
            let text = read(f);
            let is_included = f.canonicalize().is_ok_and(|c| included.contains(&c));
            let opening = if is_included { "//" } else { "//!" };
            !text.starts_with(opening)
        })
        .map(|f| rel(f))
        .collect()
}

#[test]
fn every_module_starts_with_a_doc_comment() {
    let sources = files(&root().join("crates"), ".rs");
    assert!(sources.len() > 100, "the walk found the sources");
    let missing = modules_without_doc(&sources);
    assert!(
        missing.is_empty(),
        "modules without a `//!` doc at the top:\n{}",
        missing.join("\n")
    );
}

/// Parses an example TOML file with the parser that reads that kind of file for real.
fn parse_example(path: &Path) -> Result<(), String> {
    let kind = path
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or("");
    match kind {
        "experiments" => haggle_lab::experiment::Experiment::from_path(path)
            .map(drop)
            .map_err(|e| e.to_string()),
        "eval" => haggle_lab::eval_task::EvalTask::from_path(path)
            .map(drop)
            .map_err(|e| e.to_string()),
        _ => Err("no parser known for this folder (teach tidy.rs which one reads it)".into()),
    }
}

#[test]
fn every_example_toml_parses() {
    let examples = files(&root().join("examples"), ".toml");
    assert!(!examples.is_empty(), "the walk found the examples");
    let broken: Vec<String> = examples
        .iter()
        .filter_map(|p| parse_example(p).err().map(|e| format!("{}: {e}", rel(p))))
        .collect();
    assert!(
        broken.is_empty(),
        "examples that do not parse:\n{}",
        broken.join("\n")
    );
}

/// Splits a shell line into words: single and double quotes group, `#` outside quotes starts a
/// comment. Enough for the README's examples (no escapes inside quotes).
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut any) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, '#') if word.is_empty() => break,
            (None, c) if c.is_whitespace() => {
                if any || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            (None, c) => word.push(c),
        }
    }
    if any || !word.is_empty() {
        words.push(word);
    }
    words
}

/// The `haggle ...` command lines in the README's code blocks, as argument vectors starting with
/// `haggle` (`cargo run --release -- X` counts as `haggle X`; `$ ` prompts, `VAR=$(...)`,
/// `parallel` and trailing `\` continuations are understood).
fn readme_commands(readme: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let (mut in_block, mut pending): (bool, Option<(usize, String)>) = (false, None);
    for (i, line) in readme.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        let (n, text) = match pending.take() {
            Some((n, before)) => (n, format!("{before} {}", line.trim())),
            None => (i + 1, line.trim().to_string()),
        };
        if let Some(rest) = text.strip_suffix('\\') {
            pending = Some((n, rest.to_string()));
            continue;
        }
        let mut t = text.trim_start_matches("$ ").to_string();
        if let Some((_, inner)) = t.split_once("$(haggle ") {
            t = format!("haggle {}", inner.split(')').next().unwrap_or(""));
        }
        // GNU parallel's line runs the command once per argument after `:::`, `{}` being it.
        let t = match t.strip_prefix("parallel ") {
            Some(cmd) => {
                let first = t
                    .split(":::")
                    .nth(1)
                    .and_then(|a| a.split_whitespace().next());
                let cmd = cmd.split(":::").next().unwrap_or(cmd);
                cmd.replace("{}", first.unwrap_or("1"))
            }
            None => t,
        };
        let t = t.as_str();
        let words = if let Some(rest) = t.strip_prefix("cargo run --release -- ") {
            shell_words(&format!("haggle {rest}"))
        } else if t.starts_with("haggle ") {
            shell_words(t)
        } else {
            continue;
        };
        out.push((n, words));
    }
    out
}

#[test]
fn every_readme_command_parses_with_the_cli() {
    let commands = readme_commands(&read(&root().join("README.md")));
    assert!(
        commands.len() >= 10,
        "the README's commands were found: {commands:?}"
    );
    let broken: Vec<String> = commands
        .iter()
        .filter_map(|(line, argv)| {
            crate::Cli::try_parse_from(argv)
                .err()
                .map(|e| format!("README.md:{line}: {}\n{e}", argv.join(" ")))
        })
        .collect();
    assert!(
        broken.is_empty(),
        "README commands the CLI refuses:\n{}",
        broken.join("\n")
    );
}

/// Lines holding a stub macro (`todo!`, `unimplemented!`), as `file:line`.
fn stubs(sources: &[PathBuf]) -> Vec<String> {
    // Spelled in two halves so this file does not find itself.
    let needles = [concat!("todo", "!("), concat!("unimplemented", "!(")];
    let mut out = Vec::new();
    for f in sources {
        for (i, line) in read(f).lines().enumerate() {
            if needles.iter().any(|n| line.contains(n)) {
                out.push(format!("{}:{}", rel(f), i + 1));
            }
        }
    }
    out
}

#[test]
fn no_stub_macros_anywhere() {
    let found = stubs(&files(&root().join("crates"), ".rs"));
    assert!(found.is_empty(), "stubs left in:\n{}", found.join("\n"));
}

#[test]
fn shell_words_handle_quotes_and_comments() {
    assert_eq!(
        shell_words(r#"haggle token revoke --secret "$ALICE"   # or --id HEX"#),
        ["haggle", "token", "revoke", "--secret", "$ALICE"]
    );
    assert_eq!(shell_words("a '' b"), ["a", "", "b"]);
}

/// The longest a function in `crates/*/src` may be, in lines (issue 22: split long functions along
/// the seams their docs name). Longer ones must be on [`LONG_FUNCTIONS`].
const MAX_FN_LINES: usize = 100;

/// The functions allowed over [`MAX_FN_LINES`]: `(file, function, why)`. An entry whose function
/// is no longer over the limit fails the test too, so the list only shrinks.
const LONG_FUNCTIONS: &[(&str, &str, &str)] = &[
    (
        "crates/haggle-core/src/model.rs",
        "as_str",
        "macro-generated: one arm per variant of every enum",
    ),
    (
        "crates/haggle-core/src/model.rs",
        "parse",
        "macro-generated: one arm per variant of every enum",
    ),
    (
        "crates/haggle-core/src/model.rs",
        "fmt",
        "macro-generated: one arm per variant of every enum",
    ),
    (
        "crates/haggle-http/src/lib.rs",
        "app",
        "a table: the route table of the HTTP API",
    ),
    (
        "crates/haggle-web/src/lib.rs",
        "router",
        "a table: the route table of the web pages",
    ),
    (
        "crates/haggle-service/src/story.rs",
        "describe",
        "a table: one sentence per event kind",
    ),
    (
        "crates/haggle-agents/src/tools.rs",
        "dispatch",
        "a table: one arm per tool",
    ),
    ("crates/haggle-web/src/principal.rs", "page", TO_SPLIT),
    ("crates/haggle-web/src/operator.rs", "market_page", TO_SPLIT),
    ("crates/haggle-lab/src/scenario.rs", "parse_csv", TO_SPLIT),
    (
        "crates/haggle-service/src/payments.rs",
        "drive_deal",
        TO_SPLIT,
    ),
    ("crates/haggle-agents/src/tools.rs", "check_at", TO_SPLIT),
    (
        "crates/haggle-lab/src/scenario.rs",
        "json_positions",
        TO_SPLIT,
    ),
    ("crates/haggle-agents/src/llm_brain.rs", "play", TO_SPLIT),
    (
        "crates/haggle-store/src/backend.rs",
        "execute",
        "a table: one arm per command",
    ),
    (
        "crates/haggle-store/src/backend.rs",
        "apply",
        "a table: one arm per change kind",
    ),
    (
        "crates/haggle-store/src/memory.rs",
        "apply",
        "a table: one arm per change kind",
    ),
];

/// The reason of the entries still to split, one by one (issue 22).
const TO_SPLIT: &str = "long: to split along the seams its doc names";

/// The name of the function a line opens (`[pub[(..)]] [const] [async] [unsafe] fn NAME`), and
/// its indentation; `None` for other lines and for declarations ending in `;`.
fn fn_opening(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start();
    let indent = &line[..line.len() - rest.len()];
    let mut rest = rest;
    if let Some(r) = rest.strip_prefix("pub") {
        let r = match r.strip_prefix('(') {
            Some(inner) => &inner[inner.find(')')? + 1..],
            None => r,
        };
        let trimmed = r.trim_start();
        if trimmed.len() == r.len() {
            return None; // `pub` must be followed by white space (`pubfn`, `pub_x` are not it)
        }
        rest = trimmed;
    }
    for word in ["const", "async", "unsafe"] {
        if let Some(r) = rest.strip_prefix(word) {
            let trimmed = r.trim_start();
            if trimmed.len() < r.len() {
                rest = trimmed;
            }
        }
    }
    let r = rest.strip_prefix("fn")?;
    let after = r.trim_start();
    if after.len() == r.len() || line.trim_end().ends_with(';') {
        return None;
    }
    let end = after
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(after.len());
    (end > 0).then(|| (indent, &after[..end]))
}

/// The functions of `text` longer than `limit` lines, as `(name, first line, lines)`. A function
/// opening at indentation I ends at the first line that is I spaces and `}` (rustfmt's layout).
fn long_functions(text: &str, limit: usize) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((indent, name)) = fn_opening(line) else {
            continue;
        };
        let close = format!("{indent}}}");
        if let Some(j) = (i + 1..lines.len()).find(|&j| lines[j] == close) {
            let n = j - i + 1;
            if n > limit {
                out.push((name.to_string(), i + 1, n));
            }
        }
    }
    out
}

#[test]
fn no_function_is_longer_than_the_limit_unless_allowlisted() {
    let mut sources = Vec::new();
    for krate in files_in(&root().join("crates")) {
        sources.extend(files(&krate.join("src"), ".rs"));
    }
    assert!(sources.len() > 100, "the walk found the sources");
    let mut too_long = Vec::new();
    let mut over = BTreeSet::new();
    for f in &sources {
        let file = rel(f);
        for (name, line, n) in long_functions(&read(f), MAX_FN_LINES) {
            if LONG_FUNCTIONS
                .iter()
                .any(|(lf, ln, _)| *lf == file && *ln == name)
            {
                over.insert((file.clone(), name));
            } else {
                too_long.push(format!("{file}:{line} {name}: {n} lines"));
            }
        }
    }
    assert!(
        too_long.is_empty(),
        "functions over {MAX_FN_LINES} lines (split them along their seams):\n{}",
        too_long.join("\n")
    );
    let stale: Vec<String> = LONG_FUNCTIONS
        .iter()
        .filter(|(f, n, _)| !over.contains(&(f.to_string(), n.to_string())))
        .map(|(f, n, _)| format!("{f} {n}"))
        .collect();
    assert!(
        stale.is_empty(),
        "allowlisted functions no longer over {MAX_FN_LINES} lines (remove them from LONG_FUNCTIONS):\n{}",
        stale.join("\n")
    );
    assert!(
        LONG_FUNCTIONS
            .iter()
            .all(|(_, _, why)| !why.trim().is_empty()),
        "every allowlisted function says why"
    );
}

/// The folders directly in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn a_function_ends_at_the_closing_brace_of_its_indentation() {
    let text = "pub(crate) async fn a() {\n    x();\n    y();\n}\n    fn b();\nfn c() {\n}\n";
    assert_eq!(long_functions(text, 3), [("a".to_string(), 1, 4)]);
    assert!(long_functions(text, 4).is_empty());
    assert_eq!(
        fn_opening("    pub const unsafe fn go_2(x: u8) {"),
        Some(("    ", "go_2"))
    );
    assert_eq!(fn_opening("let fn_name = 1;"), None);
    assert_eq!(fn_opening("    fn decl(&self);"), None);
}
