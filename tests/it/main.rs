//! The integration tests, one binary (one link on a 2-core CI machine), a module per theme.
//! Each module starts the real server (or the decision in process) against stand-ins; see
//! DEVELOPMENT.md for how to run one theme (`cargo nextest run -E 'test(/^rules::/)'`).

#[path = "../common/mod.rs"]
mod common;

mod admission;
mod architecture;
mod attacks;
mod caller;
mod cert_reload;
mod chart;
mod check_xnat;
mod connections;
mod decision;
mod decision_properties;
mod deploy;
mod dir_probe;
mod events;
mod fixtures_in_step;
mod launch_context;
mod launch_fidelity;
mod monitoring;
mod reload;
mod rules;
mod server;
mod surge;
mod tools;
mod xnat_access;
mod xnat_as_served;
mod xnat_index;
mod xnat_outage;
mod xnat_protection;
