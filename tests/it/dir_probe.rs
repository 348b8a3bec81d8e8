//! Looks at the claims the webhook sees (`seenAt`) while part of one hangs, as a hung NFS subtree
//! does: the hung looks are given up within their own limit and hold no look slot after it, a
//! hung path is not looked at again by every review, the threads stuck in it are bounded, and
//! another claim is answered meanwhile. The look is injected (`DirProbe::with_look`): a real
//! hung file system cannot be made in a test.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use jupyter_xnat_webhook::policy::{Policy, Storage};
use jupyter_xnat_webhook::{AbsentDirs, Seen};
use jupyter_xnat_webhook::{DirProbe, Found};
use tokio::time::Instant;

const POLICY: &str = "
storage:
  volumes:
    - {name: hung, claimName: hung, seenAt: /hung}
    - {name: fine, claimName: fine, seenAt: /fine}
";

/// What a review gives the looks (a review's XNAT budget is at most 8 s).
const BUDGET: Duration = Duration::from_secs(4);

/// Where the hung looks wait until the test opens it, so no thread outlives the test (even one
/// that fails: [`OpenOnDrop`]).
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// A probe whose looks below `/hung/stuck` wait at the gate; it counts those looks.
fn probe(gate: &Arc<Gate>) -> (DirProbe, Arc<AtomicUsize>) {
    let hung_looks = Arc::new(AtomicUsize::new(0));
    let (gate, counted) = (gate.clone(), hung_looks.clone());
    let probe = DirProbe::with_look(move |_root: &Path, path: &Path| {
        if path.starts_with("/hung/stuck") {
            counted.fetch_add(1, Ordering::SeqCst);
            gate.wait();
        }
        Found::Dir
    });
    (probe, hung_looks)
}

fn stuck(range: std::ops::Range<usize>) -> Vec<(String, String)> {
    range
        .map(|i| ("hung".into(), format!("stuck/{i}")))
        .collect()
}

async fn absent(probe: &DirProbe, storage: &Storage, dirs: Vec<(String, String)>) -> AbsentDirs {
    probe.absent(dirs, storage, Instant::now() + BUDGET).await
}

#[tokio::test]
async fn a_hung_subtree_does_not_hold_the_look_slots() {
    let gate = Arc::new(Gate::default());
    let _open = OpenOnDrop(gate.clone());
    let (probe, hung_looks) = probe(&gate);
    let storage = Arc::new(Policy::parse(POLICY).unwrap().storage);

    // 20 directories of a hung subtree in flight, more than there are look slots.
    let hung = {
        let (probe, storage) = (probe.clone(), storage.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            (
                absent(&probe, &storage, stuck(0..20)).await,
                started.elapsed(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Another claim is answered meanwhile.
    let started = Instant::now();
    let fine = absent(&probe, &storage, vec![("fine".into(), "ALPHA".into())]).await;
    let waited = started.elapsed();
    assert_eq!(fine.get("fine", "ALPHA"), None, "it exists");
    assert!(
        waited < Duration::from_millis(500),
        "another claim waited {waited:?} behind a hung one"
    );

    // The hung ones are given up within their own limit, not the review's budget.
    let (hung, took) = hung.await.unwrap();
    for i in 0..20 {
        assert_eq!(hung.get("hung", &format!("stuck/{i}")), Some(Seen::Unseen));
    }
    assert!(took < Duration::from_millis(2500), "gave up after {took:?}");

    // Remembered: the same paths again are not looked at, and the threads stuck in the claim
    // are bounded, so a new hung path there is not looked at either while they are stuck.
    let looked = hung_looks.load(Ordering::SeqCst);
    assert!(looked <= 8, "{looked} threads stuck in one claim");
    let started = Instant::now();
    let again = absent(&probe, &storage, stuck(0..30)).await;
    assert_eq!(again.get("hung", "stuck/25"), Some(Seen::Unseen));
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(hung_looks.load(Ordering::SeqCst), looked, "looked again");

    // Once the stuck looks return, the claim is looked at again and their answers are kept.
    gate.open();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let after = absent(&probe, &storage, vec![("hung".into(), "stuck/0".into())]).await;
        if after.get("hung", "stuck/0").is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the hung path never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A few hung directories of one claim leave its other directories answered.
#[tokio::test]
async fn a_few_hung_directories_leave_the_rest_of_their_claim_answered() {
    let gate = Arc::new(Gate::default());
    let _open = OpenOnDrop(gate.clone());
    let (probe, _) = probe(&gate);
    let storage = Arc::new(Policy::parse(POLICY).unwrap().storage);
    let hung = {
        let (probe, storage) = (probe.clone(), storage.clone());
        tokio::spawn(async move { absent(&probe, &storage, stuck(0..3)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let other = vec![("hung".into(), "BETA".into())];
    let started = Instant::now();
    assert_eq!(
        absent(&probe, &storage, other.clone()).await,
        AbsentDirs::NONE
    );
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(
        hung.await.unwrap().get("hung", "stuck/1"),
        Some(Seen::Unseen)
    );
    // Still answered once those are stuck.
    let other = vec![("hung".into(), "GAMMA".into())];
    assert_eq!(absent(&probe, &storage, other).await, AbsentDirs::NONE);
}
