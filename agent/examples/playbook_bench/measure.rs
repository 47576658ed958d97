//! What each measurement records besides its wall time: CPU seconds on each side (this
//! process, the PostgreSQL tools it waited for, the PostgreSQL server, the SeaweedFS
//! regions), the machine's load before and after, and the machine itself.
//!
//! The machine is shared with other work, so the load average is printed next to every
//! figure: a wall time taken at load 4 on 2 cores says less than one taken at load 0.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// CPU seconds (user + system) used so far by each party.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuSample {
    /// This process: lifeboat's streaming, decryption, decompression, the S3 client.
    own_seconds: f64,
    /// Children this process has waited for: pg_dump, pg_restore, psql.
    tools_seconds: f64,
    /// The postmaster, its live children and its reaped ones.
    postgres_seconds: f64,
    /// The `weed mini` processes of the regions.
    seaweed_seconds: f64,
}

/// Where to find the servers' processes.
#[derive(Debug, Clone)]
pub(crate) struct ServerProcesses {
    postmaster: Option<u32>,
    /// A path each region's server has on its command line.
    region_directories: Vec<PathBuf>,
    ticks_per_second: f64,
}

impl ServerProcesses {
    pub(crate) fn find(postgres_directory: &Path, region_directories: Vec<PathBuf>) -> Self {
        let data = postgres_directory
            .join("data")
            .to_string_lossy()
            .into_owned();
        ServerProcesses {
            postmaster: all_pids()
                .into_iter()
                .find(|pid| command_line(*pid).contains(&data)),
            region_directories,
            ticks_per_second: clock_ticks_per_second(),
        }
    }

    pub(crate) fn sample(&self) -> CpuSample {
        let (own, reaped) = proc_times(std::process::id())
            .map(|(_, own, reaped)| (own, reaped))
            .unwrap_or((0, 0));
        let mut postgres = 0;
        let mut seaweed = 0;
        let needles: Vec<String> = self
            .region_directories
            .iter()
            .map(|directory| directory.to_string_lossy().into_owned())
            .collect();
        for pid in all_pids() {
            let Some((parent, pid_own, pid_reaped)) = proc_times(pid) else {
                continue;
            };
            if Some(pid) == self.postmaster {
                postgres += pid_own + pid_reaped;
            } else if Some(parent) == self.postmaster {
                postgres += pid_own;
            } else if !needles.is_empty() {
                let line = command_line(pid);
                if line.contains("weed") && needles.iter().any(|needle| line.contains(needle)) {
                    seaweed += pid_own + pid_reaped;
                }
            }
        }
        let seconds = |ticks: u64| ticks as f64 / self.ticks_per_second;
        CpuSample {
            own_seconds: seconds(own),
            tools_seconds: seconds(reaped),
            postgres_seconds: seconds(postgres),
            seaweed_seconds: seconds(seaweed),
        }
    }
}

/// CPU used between two samples.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuUsed {
    pub(crate) own_seconds: f64,
    pub(crate) tools_seconds: f64,
    pub(crate) postgres_seconds: f64,
    pub(crate) seaweed_seconds: f64,
}

impl CpuUsed {
    pub(crate) fn between(before: CpuSample, after: CpuSample) -> Self {
        CpuUsed {
            own_seconds: after.own_seconds - before.own_seconds,
            tools_seconds: after.tools_seconds - before.tools_seconds,
            postgres_seconds: after.postgres_seconds - before.postgres_seconds,
            seaweed_seconds: after.seaweed_seconds - before.seaweed_seconds,
        }
    }

    /// How many of the machine's cores the measured parties kept busy, on average.
    pub(crate) fn cores_busy(&self, wall: Duration) -> f64 {
        (self.own_seconds + self.tools_seconds + self.postgres_seconds + self.seaweed_seconds)
            / wall.as_secs_f64().max(1e-9)
    }
}

fn clock_ticks_per_second() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux we run on; `getconf` avoids unsafe code.
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn command_line(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|line| String::from_utf8_lossy(&line).replace('\0', " "))
        .unwrap_or_default()
}

/// `(ppid, utime + stime, cutime + cstime)` in clock ticks, from `/proc/<pid>/stat`.
fn proc_times(pid: u32) -> Option<(u32, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; the fields after it are space-separated.
    let after_name = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after_name.split(' ').collect();
    let number = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<u64>().ok())
    };
    let parent = u32::try_from(number(1)?).ok()?;
    Some((parent, number(11)? + number(12)?, number(13)? + number(14)?))
}

/// The 1-minute load average.
pub(crate) fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// `uptime`'s line, or the load averages when it is missing.
pub(crate) fn uptime() -> String {
    std::process::Command::new("uptime")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|text| text.trim().to_owned())
        .unwrap_or_else(|| {
            std::fs::read_to_string("/proc/loadavg").unwrap_or_else(|_| "unknown".to_owned())
        })
}

/// CPU model, cores, memory and kernel, in one line.
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism()
        .map(|cores| cores.get())
        .unwrap_or(0);
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib / 1024.0 / 1024.0)
        })
        .unwrap_or(f64::NAN);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_owned())
        .unwrap_or_default();
    format!("{model}, {cores} cores, {memory_gib:.1} GiB RAM, Linux {kernel}")
}

/// The first line a program prints for `argument` (its version), or "unknown".
pub(crate) fn version_of(program: &Path, argument: &str) -> String {
    std::process::Command::new(program)
        .arg(argument)
        .output()
        .ok()
        .and_then(|output| {
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.lines().next().map(|line| line.trim().to_owned())
        })
        .filter(|line| !line.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}
