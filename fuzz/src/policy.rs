//! Any bytes as a policy file, through the parser startup and every reload use. A policy that
//! loads is one `check-policy` accepts, and the effective values `check-policy` prints load
//! again to the same effective values (what an admin copies from its output means the same).

use jupyter_xnat_webhook::policy::{Overrides, Policy};
use jupyter_xnat_webhook::tools::check_policy;

/// Panics when the input breaks a promise.
pub fn check(bytes: &[u8]) {
    let loaded = Policy::from_yaml(bytes, &Overrides::default());
    let Ok(text) = std::str::from_utf8(bytes) else {
        assert!(loaded.is_err(), "a policy that is not UTF-8 loaded");
        return;
    };
    let checked = check_policy(text);
    assert_eq!(
        loaded.is_ok(),
        checked.is_ok(),
        "load and check-policy disagree: {checked:?}"
    );
    let Ok(effective) = checked else { return };
    match check_policy(&effective) {
        Ok(again) => assert_eq!(
            again, effective,
            "check-policy's output is not a fixed point"
        ),
        Err(e) => panic!("check-policy's own output is refused: {e}\n{effective}"),
    }
}
