//! Fault injection: make a chosen request to a region fail, in front of a real server.
//!
//! Tests of what a backup or a restore does when one request fails used to need a server
//! killed at the right moment. A [`FaultInjector`] lets a test say instead "the upload of
//! part 2 to region us fails", "every manifest PUT fails" or "the GET of the dump in eu
//! fails" (the way quickwit's storage decorators and neon's `remote_storage` do). The
//! request is then never sent: the call returns the [`RegionError`] a failure of that kind
//! would return after the SDK's retries, and everything else still goes to the real
//! server underneath.
//!
//! Every [`Region`](super::Region) holds an injector, shared by its clones (so a test arms
//! the regions it hands to a backup). It is inert until armed: production code never arms
//! it, and an unarmed injector costs one atomic load per request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::{Operation, RegionError, RegionErrorKind};
use crate::ids::RegionName;

/// The words every injected failure carries, so a test can tell it from a real one.
pub const INJECTED_FAULT: &str = "injected fault";

/// Which calls fail, and how. Built with [`Fault::on`] and the narrowing methods.
#[derive(Debug, Clone)]
pub struct Fault {
    operation: Operation,
    key_suffix: Option<String>,
    part_number: Option<i32>,
    /// Matching calls let through before the first failure.
    skip_calls: usize,
    /// Failures left; `None`: every matching call fails.
    failures_left: Option<usize>,
    kind: RegionErrorKind,
}

impl Fault {
    /// Every call of `operation` fails as unreachable, until narrowed.
    pub fn on(operation: Operation) -> Fault {
        Fault {
            operation,
            key_suffix: None,
            part_number: None,
            skip_calls: 0,
            failures_left: None,
            kind: RegionErrorKind::Unreachable,
        }
    }

    /// Only calls about a key ending in `suffix` (e.g. `.manifest.json`).
    pub fn key_ending(mut self, suffix: &str) -> Fault {
        self.key_suffix = Some(suffix.to_owned());
        self
    }

    /// Only calls about part `part_number` of a multipart upload.
    pub fn part(mut self, part_number: i32) -> Fault {
        self.part_number = Some(part_number);
        self
    }

    /// Let the first `calls` matching calls through.
    pub fn after(mut self, calls: usize) -> Fault {
        self.skip_calls = calls;
        self
    }

    /// Fail only `failures` matching calls, then let the rest through.
    pub fn times(mut self, failures: usize) -> Fault {
        self.failures_left = Some(failures);
        self
    }

    /// Fail with `kind` (default: unreachable).
    pub fn with_kind(mut self, kind: RegionErrorKind) -> Fault {
        self.kind = kind;
        self
    }

    fn matches(&self, operation: Operation, key: &str, part_number: Option<i32>) -> bool {
        self.operation == operation
            && self
                .key_suffix
                .as_deref()
                .is_none_or(|suffix| key.ends_with(suffix))
            && self
                .part_number
                .is_none_or(|wanted| part_number == Some(wanted))
    }
}

/// The faults armed on one region, shared by its clones; inert until [`arm`](Self::arm).
#[derive(Debug, Clone, Default)]
pub struct FaultInjector {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Whether any fault was ever armed: the one check an unarmed region pays.
    armed: AtomicBool,
    faults: Mutex<Vec<Fault>>,
    /// Calls failed so far, as `operation key`: what a test can assert on.
    injected: Mutex<Vec<String>>,
}

impl FaultInjector {
    /// Make the calls `fault` describes fail from now on.
    pub fn arm(&self, fault: Fault) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(fault);
        self.shared.armed.store(true, Ordering::SeqCst);
    }

    /// Remove every armed fault.
    pub fn disarm(&self) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The calls failed so far, each as `operation key` (with ` part N` for a part).
    pub fn injected(&self) -> Vec<String> {
        self.shared
            .injected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The error this call is to fail with, if an armed fault matches it.
    pub(super) fn check(
        &self,
        region: &RegionName,
        operation: Operation,
        key: &str,
        part_number: Option<i32>,
    ) -> Result<(), RegionError> {
        if !self.shared.armed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let kind = {
            let mut faults = self
                .shared
                .faults
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let Some(fault) = faults
                .iter_mut()
                .find(|fault| fault.matches(operation, key, part_number))
            else {
                return Ok(());
            };
            if fault.skip_calls > 0 {
                fault.skip_calls -= 1;
                return Ok(());
            }
            match &mut fault.failures_left {
                Some(0) => return Ok(()),
                Some(left) => *left -= 1,
                None => {}
            }
            fault.kind
        };
        let mut record = format!("{} {key}", operation.name());
        if let Some(part_number) = part_number {
            record.push_str(&format!(" part {part_number}"));
        }
        self.shared
            .injected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
        Err(RegionError {
            region: region.clone(),
            operation: operation.name(),
            key: key.to_owned(),
            part_number,
            kind,
            message: INJECTED_FAULT.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region_name() -> RegionName {
        RegionName::parse("us").expect("region name")
    }

    #[test]
    fn an_unarmed_injector_lets_every_call_through() {
        let injector = FaultInjector::default();
        assert!(
            injector
                .check(&region_name(), Operation::PutObject, "k", None)
                .is_ok()
        );
        assert!(injector.injected().is_empty());
    }

    #[test]
    fn a_fault_fails_only_the_chosen_call_and_reads_as_a_region_error() {
        let injector = FaultInjector::default();
        injector.arm(Fault::on(Operation::UploadPart).part(2).times(1));
        let call = |part| injector.check(&region_name(), Operation::UploadPart, "k", Some(part));
        assert!(call(1).is_ok());
        let error = call(2).expect_err("part 2 fails");
        assert_eq!(error.kind, RegionErrorKind::Unreachable);
        assert_eq!(
            error.to_string(),
            "region us: upload part 2 of k: injected fault"
        );
        assert!(call(2).is_ok(), "only once");
        assert!(
            injector
                .check(&region_name(), Operation::PutObject, "k", None)
                .is_ok()
        );
        assert_eq!(injector.injected(), ["upload part k part 2"]);
    }

    #[test]
    fn a_fault_can_wait_for_the_nth_call_and_match_a_key_suffix() {
        let injector = FaultInjector::default();
        injector.arm(
            Fault::on(Operation::GetObject)
                .key_ending(".dump")
                .after(1)
                .with_kind(RegionErrorKind::NotFound),
        );
        let get = |key| injector.check(&region_name(), Operation::GetObject, key, None);
        assert!(get("a.manifest.json").is_ok());
        assert!(get("a.dump").is_ok(), "the first is let through");
        assert_eq!(
            get("a.dump").expect_err("the second fails").kind,
            RegionErrorKind::NotFound
        );
        assert!(get("a.dump").is_err(), "and every one after");
        injector.disarm();
        assert!(get("a.dump").is_ok());
    }
}
