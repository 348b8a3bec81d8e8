//! Every seed through its target's checks, without libFuzzer: the inputs runs once crashed on
//! are kept in `fuzz/seeds/` (named for what they found), so each stays fixed on every
//! `make test`.

use std::path::{Path, PathBuf};

use jupyter_xnat_webhook_fuzz as fuzz;

fn inputs(dirs: &[&str]) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for d in dirs {
        let path = root.join(d);
        if path.is_file() {
            files.push(path);
            continue;
        }
        for entry in std::fs::read_dir(&path).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    files.sort();
    assert!(!files.is_empty(), "no seeds in {dirs:?}");
    files
}

fn replay(dirs: &[&str], check: fn(&[u8])) {
    for file in inputs(dirs) {
        // Names the input a failing check panics on.
        eprintln!("{}", file.display());
        check(&std::fs::read(&file).unwrap());
    }
}

#[test]
fn review_seeds() {
    replay(
        &["seeds/review", "../tests/fixtures/kubespawner-7.1"],
        fuzz::review::check,
    );
}

#[test]
fn policy_seeds() {
    replay(
        &["seeds/policy", "../deploy/base/policy.yaml"],
        fuzz::policy::check,
    );
}

#[test]
fn user_options_seeds() {
    replay(&["seeds/user_options"], fuzz::user_options::check);
}

#[test]
fn xnat_answers_seeds() {
    replay(&["seeds/xnat_answers"], fuzz::xnat_answers::check);
}
