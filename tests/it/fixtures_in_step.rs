//! The fixture copies in tests/fixtures/kubespawner-7.1 must match the shared originals in
//! ../shared/fixtures (when that checkout is beside this one, as in CI).

use std::path::Path;

#[test]
fn fixture_copies_match_the_shared_originals() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../shared/fixtures");
    if !shared.is_dir() {
        // CI always has ../shared beside the checkout; a lone clone may not.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have ../shared/fixtures"
        );
        eprintln!("../shared/fixtures not present; nothing to compare");
        return;
    }
    let ours = root.join("tests/fixtures/kubespawner-7.1");
    let mut compared = 0;
    for entry in std::fs::read_dir(&shared).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_name().unwrap();
            let copy = std::fs::read(ours.join(name)).unwrap_or_else(|_| {
                panic!("{name:?} is missing from tests/fixtures/kubespawner-7.1")
            });
            assert_eq!(
                copy,
                std::fs::read(&path).unwrap(),
                "{name:?} drifted from ../shared"
            );
            compared += 1;
        }
    }
    assert!(
        compared >= 4,
        "expected the shared fixtures, compared {compared}"
    );
}
