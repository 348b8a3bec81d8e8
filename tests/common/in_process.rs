//! The webhook's admission code in process, with access from a fixed table instead of XNAT: the
//! same `Admission::review` the server runs, for policy logic that needs no sockets.

use std::collections::HashMap;
use std::sync::Arc;

use jupyter_xnat_webhook::UserAccess;
use jupyter_xnat_webhook::admission::{AccessSource, Admission, Caller};
use jupyter_xnat_webhook::policy::Policy;
use serde_json::Value;

pub struct InProcess {
    admission: Admission,
}

impl InProcess {
    /// `policy_yaml` with the stand-in's demo users, then `users` (user → group ids) added or
    /// replacing theirs. Users in neither are unknown to XNAT.
    pub fn demo(policy_yaml: &str, users: &[(&str, &[&str])]) -> Self {
        let mut table: HashMap<String, Arc<UserAccess>> = HashMap::new();
        for (user, groups) in xnat_standin::DEMO_USERS.iter().chain(users) {
            table.insert(
                (*user).to_owned(),
                Arc::new(UserAccess::from_group_ids(groups)),
            );
        }
        let policy = Policy::parse(policy_yaml).unwrap();
        let source = AccessSource::Static(Arc::new(table), None);
        Self {
            admission: Admission::new(policy, source, None),
        }
    }

    /// Answers a review as the server would, as raw JSON.
    pub async fn review(&self, review: &Value) -> Value {
        let body = serde_json::to_vec(review).unwrap();
        let response = self
            .admission
            .review(&body, &Caller::offline())
            .await
            .unwrap();
        serde_json::from_slice(&response).unwrap()
    }
}
