//! The configured regions, built once per process and shared.
//!
//! A [`Region`] holds an S3 client with its connection pool. Building one per job threw
//! the pool away each time (a new TLS handshake per job and region), and let each job
//! build its clients its own way. [`Regions`] is built once from the [`Config`] at start
//! and passed down; cloning it is cheap (one `Arc`), and every clone shares the clients.

use std::ops::Deref;
use std::sync::Arc;

use super::Region;
use crate::config::{Config, UnknownName};
use crate::ids::RegionName;

/// Every configured region, in the configuration's order (its priority order).
#[derive(Debug, Clone)]
pub struct Regions {
    regions: Arc<[Region]>,
}

impl Regions {
    /// A client for every region of `config`; nothing is sent until the first request.
    pub fn from_config(config: &Config) -> Regions {
        Regions {
            regions: config.regions.iter().map(Region::new).collect(),
        }
    }

    /// The region called `name`; the error names the configured ones.
    pub fn named(&self, name: &RegionName) -> Result<&Region, UnknownName> {
        self.regions
            .iter()
            .find(|region| region.name() == name)
            .ok_or_else(|| UnknownName {
                kind: "region",
                name: name.to_string(),
                known: self
                    .regions
                    .iter()
                    .map(|region| region.name().to_string())
                    .collect(),
            })
    }
}

impl Deref for Regions {
    type Target = [Region];

    fn deref(&self) -> &[Region] {
        &self.regions
    }
}

impl From<Vec<Region>> for Regions {
    fn from(regions: Vec<Region>) -> Regions {
        Regions {
            regions: regions.into(),
        }
    }
}
