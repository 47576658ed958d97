//! `/api/v1/agent/…`: what an agent asks for itself.

pub mod claim;
