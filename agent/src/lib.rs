//! The agent: runs jobs next to the databases.
//!
//! It runs them in-process for the command line (`lifeboat backup`, `lifeboat restore`),
//! and claims them from the controller's HTTP API in [`worker`] (`lifeboat agent`). A backup
//! goes through core's data path; a restore, a drill, a helpdesk restore onto live and a copy
//! run the provisioner's playbooks ([`playbook_job`]) around core's restore stream, with
//! fallback from region to region ([`restore_job`]). Maintenance jobs (scrub,
//! replicate) check and repair the stored copies without any keys.

pub mod backup_job;
pub mod maintenance;
pub mod playbook_job;
pub mod restore_job;
pub mod worker;
