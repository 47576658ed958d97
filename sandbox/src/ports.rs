//! Free TCP ports on 127.0.0.1 for the servers of the sandbox.
//!
//! A port is only known to be free at the moment we test it: another process may take it before
//! our server binds it. Callers therefore treat "address in use" at server start as a reason to
//! pick new ports and try again, not as a failure.
//!
//! Ports in [`FIXED_PORT_RANGE`] are kept across a server restart, and while the server is down
//! they look free. Every sandbox process (nextest runs each test in its own) therefore reserves
//! the ports it picks there with an exclusive lock on a file named after the port, held for as
//! long as the [`PortReservation`] lives; the kernel drops the lock when the process dies.

use std::collections::BTreeSet;
use std::fs::{self, File, TryLockError};
use std::hash::{BuildHasher, RandomState};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::ops::Range;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;

use anyhow::Context as _;

/// Ports below the kernel's usual ephemeral range (32768-60999 on Linux), so that outgoing
/// connections of other programs do not take them between our check and the server's bind.
pub const FIXED_PORT_RANGE: Range<u16> = 20_000..32_768;

/// How many random candidates [`pick_free_ports_in_fixed_range`] tries before giving up.
const MAXIMUM_PORT_CANDIDATES: usize = 1_000;

/// Returns a port the kernel considers free on 127.0.0.1 right now (bind to port 0, read, close).
pub fn free_loopback_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .context("bind 127.0.0.1:0 to find a free port")?;
    let address = listener
        .local_addr()
        .context("read the address of the port-finding listener")?;
    Ok(address.port())
}

/// Whether nothing listens on `port` of 127.0.0.1 at this moment.
pub fn is_loopback_port_free(port: u16) -> bool {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Ports picked in [`FIXED_PORT_RANGE`], reserved against every other sandbox process until this
/// is dropped, even while nothing listens on them (a region killed to be restarted).
#[derive(Debug)]
pub struct PortReservation {
    ports: Vec<u16>,
    /// One locked file per reserved port (partners included); dropping them releases the locks.
    _lock_files: Vec<File>,
}

impl PortReservation {
    /// The picked ports, in the order they were asked for (partners not included).
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }
}

/// Picks and reserves `count` distinct random ports in [`FIXED_PORT_RANGE`] that are free now.
///
/// Used for servers that must be told every port up front and keep them across a restart.
/// Random choice keeps two test processes starting servers at once from colliding.
pub fn pick_free_ports_in_fixed_range(count: usize) -> anyhow::Result<PortReservation> {
    pick_free_ports_with_partners(count, 0)
}

/// Picks and reserves `count` distinct random ports `p` such that `p` and `p + partner_offset`
/// are all free, not reserved by another sandbox process, and inside [`FIXED_PORT_RANGE`].
///
/// SeaweedFS derives gRPC ports as HTTP port + 10000 in places that ignore the explicit gRPC
/// port flags, so each of its HTTP ports needs its partner free too.
pub fn pick_free_ports_with_partners(
    count: usize,
    partner_offset: u16,
) -> anyhow::Result<PortReservation> {
    let lock_directory = reservation_directory()?;
    let base_range_end = FIXED_PORT_RANGE.end.saturating_sub(partner_offset);
    anyhow::ensure!(
        base_range_end > FIXED_PORT_RANGE.start,
        "pick ports with partners {partner_offset} apart: the offset leaves no room in {}..{}",
        FIXED_PORT_RANGE.start,
        FIXED_PORT_RANGE.end
    );
    let range_width = u64::from(base_range_end - FIXED_PORT_RANGE.start);
    let mut taken_ports = BTreeSet::new();
    let mut ordered_ports = Vec::with_capacity(count);
    let mut lock_files = Vec::with_capacity(count * 2);
    for candidate_index in 0..MAXIMUM_PORT_CANDIDATES {
        if ordered_ports.len() == count {
            break;
        }
        let random_offset = random_u64(candidate_index) % range_width;
        let candidate_port = FIXED_PORT_RANGE.start
            + u16::try_from(random_offset).context("convert a port offset that fits the range")?;
        let partner_port = candidate_port + partner_offset;
        let needed_ports = BTreeSet::from([candidate_port, partner_port]);
        if needed_ports.iter().any(|port| taken_ports.contains(port)) {
            continue;
        }
        let mut candidate_locks = Vec::with_capacity(needed_ports.len());
        for port in &needed_ports {
            match try_reserve(&lock_directory, *port)? {
                Some(lock_file) => candidate_locks.push(lock_file),
                None => break,
            }
        }
        if candidate_locks.len() < needed_ports.len()
            || !needed_ports.iter().all(|port| is_loopback_port_free(*port))
        {
            continue;
        }
        taken_ports.extend(needed_ports);
        lock_files.extend(candidate_locks);
        ordered_ports.push(candidate_port);
    }
    anyhow::ensure!(
        ordered_ports.len() == count,
        "find {count} free ports (with partners {partner_offset} above) in {}..{} on 127.0.0.1: found {} after {MAXIMUM_PORT_CANDIDATES} candidates",
        FIXED_PORT_RANGE.start,
        FIXED_PORT_RANGE.end,
        ordered_ports.len()
    );
    Ok(PortReservation {
        ports: ordered_ports,
        _lock_files: lock_files,
    })
}

/// Where the lock files of reserved ports live: shared by every sandbox process of the
/// machine, whoever runs it (world-writable and sticky, like /tmp itself).
fn reservation_directory() -> anyhow::Result<PathBuf> {
    let directory = std::env::temp_dir().join("lifeboat-sandbox-ports");
    if fs::create_dir(&directory).is_ok() {
        // Ours: let other users' test runs add their lock files too.
        fs::set_permissions(&directory, fs::Permissions::from_mode(0o1777)).with_context(|| {
            format!("open up port reservation directory {}", directory.display())
        })?;
    }
    anyhow::ensure!(
        directory.is_dir(),
        "port reservation directory {} is missing and cannot be created",
        directory.display()
    );
    Ok(directory)
}

/// Locks `<directory>/<port>.lock` without waiting: `None` if another process holds it.
/// Another user's lock file is opened read-only: `flock` works on it all the same.
fn try_reserve(directory: &std::path::Path, port: u16) -> anyhow::Result<Option<File>> {
    let path = directory.join(format!("{port}.lock"));
    let opened = match File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o644)
        .open(&path)
    {
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => File::open(&path),
        opened => opened,
    };
    let lock_file =
        opened.with_context(|| format!("open port reservation file {}", path.display()))?;
    match lock_file.try_lock() {
        Ok(()) => Ok(Some(lock_file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("lock port reservation file {}", path.display()))
        }
    }
}

/// A random number from the standard library's randomly seeded hasher: no `rand` dependency
/// for choosing ports.
fn random_u64(salt: usize) -> u64 {
    RandomState::new().hash_one((salt, std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_ports_are_distinct_free_and_in_range() {
        let reservation = pick_free_ports_in_fixed_range(10).expect("pick ten free ports");
        let ports = reservation.ports().to_vec();
        assert_eq!(ports.len(), 10);
        let distinct_ports: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(
            distinct_ports.len(),
            10,
            "ports must be distinct: {ports:?}"
        );
        for port in ports {
            assert!(
                FIXED_PORT_RANGE.contains(&port),
                "port {port} is out of range"
            );
            assert!(
                is_loopback_port_free(port),
                "port {port} should still be free"
            );
        }
    }

    #[test]
    fn picked_ports_and_their_partners_are_free_and_in_range() {
        let reservation = pick_free_ports_with_partners(5, 10_000).expect("pick five port pairs");
        let mut all_ports = BTreeSet::new();
        for &port in reservation.ports() {
            let partner_port = port + 10_000;
            assert!(
                FIXED_PORT_RANGE.contains(&partner_port),
                "partner {partner_port} is out of range"
            );
            assert!(is_loopback_port_free(port) && is_loopback_port_free(partner_port));
            assert!(
                all_ports.insert(port) && all_ports.insert(partner_port),
                "ports overlap"
            );
        }
    }

    #[test]
    fn a_reserved_port_is_not_reserved_again_until_released() {
        let reservation = pick_free_ports_with_partners(1, 10_000).expect("pick one port pair");
        let port = reservation.ports()[0];
        let directory = reservation_directory().expect("reservation directory");
        for reserved_port in [port, port + 10_000] {
            assert!(
                try_reserve(&directory, reserved_port)
                    .expect("try to reserve")
                    .is_none(),
                "port {reserved_port} is reserved, nothing listens on it, and it must not be handed out"
            );
        }
        drop(reservation);
        assert!(
            try_reserve(&directory, port)
                .expect("try to reserve")
                .is_some(),
            "a released port can be reserved again"
        );
    }

    #[test]
    fn a_listening_port_is_not_free() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
        let port = listener.local_addr().expect("read listener address").port();
        assert!(!is_loopback_port_free(port));
        drop(listener);
        assert!(is_loopback_port_free(port));
    }
}
