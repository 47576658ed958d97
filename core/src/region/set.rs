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

    /// These regions signing with their manager keys ([`Region::manager`]), sharing their
    /// fault injectors: for the controller (purge, lock extension), never handed to an
    /// agent. A region `config` does not name keeps its key.
    pub fn managers(&self, config: &Config) -> Regions {
        Regions {
            regions: self
                .regions
                .iter()
                .map(|region| {
                    config
                        .regions
                        .iter()
                        .find(|configured| configured.name == *region.name())
                        .map_or_else(
                            || region.clone(),
                            |configured| region.as_manager(configured),
                        )
                })
                .collect(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RegionConfig;
    use crate::region::{Fault, Operation};

    fn region(name: &str) -> Region {
        Region::new(&RegionConfig {
            name: RegionName::parse(name).expect("region name"),
            endpoint: "http://127.0.0.1:1".to_owned(),
            bucket: "lifeboat".to_owned(),
            s3_region: "us-east-1".to_owned(),
            access_key_id: "lifeboat-test".to_owned(),
            secret_access_key: secrecy::SecretString::from("test-secret"),
            manager: None,
            object_lock: None,
            require_lock: false,
            path_style: true,
            priority: 0,
        })
    }

    #[test]
    fn every_copy_of_the_set_shares_each_regions_state() {
        let regions = Regions::from(vec![region("eu"), region("us")]);
        let us = RegionName::parse("us").expect("region name");
        // A job's own list (as `backup_tenant` takes it) is made of the same regions.
        let jobs_list = regions.clone().to_vec();
        regions
            .named(&us)
            .expect("us")
            .faults()
            .arm(Fault::on(Operation::PutObject));
        assert!(
            jobs_list[1]
                .faults()
                .check(&us, Operation::PutObject, "key", None)
                .is_err()
        );
        let unknown = regions
            .named(&RegionName::parse("ap").expect("region name"))
            .expect_err("not configured");
        assert_eq!(
            unknown.to_string(),
            "unknown region \"ap\" (configured: eu, us)"
        );
    }
}
