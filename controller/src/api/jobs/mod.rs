//! `/api/v1/jobs/{id}/…`: what the agent holding a job's lease says about it.

pub mod heartbeat;
pub mod report;
