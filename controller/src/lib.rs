//! The controller: catalog, scheduler, job queue, retention, scrub and repair, HTTP API.
//!
//! It arrives with the controller issue; until then `lifeboat backup` and `lifeboat
//! restore` run jobs directly through the agent crate.
