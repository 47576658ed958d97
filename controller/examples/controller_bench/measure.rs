//! Latency summaries and the CPU split between this process and PostgreSQL.

use std::path::Path;
use std::time::Duration;

// ------------------------------------------------------------------------ statistics --

/// Min / median / p95 / max of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Summary {
    count: usize,
    min_ms: f64,
    median_ms: f64,
    p95_ms: f64,
    max_ms: f64,
}

impl Summary {
    pub(crate) fn of(samples: &[Duration]) -> Summary {
        let mut sorted: Vec<f64> = samples
            .iter()
            .map(|sample| sample.as_secs_f64() * 1000.0)
            .collect();
        sorted.sort_by(f64::total_cmp);
        // Nearest rank: the smallest sample with at least p of the samples at or below it.
        let rank = |p: f64| -> f64 {
            if sorted.is_empty() {
                return f64::NAN;
            }
            let index = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[index]
        };
        Summary {
            count: sorted.len(),
            min_ms: rank(0.0),
            median_ms: rank(0.5),
            p95_ms: rank(0.95),
            max_ms: sorted.last().copied().unwrap_or(f64::NAN),
        }
    }

    pub(crate) fn row(&self, label: &str, note: &str) -> String {
        format!(
            "| {label} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {note} |",
            self.count, self.min_ms, self.median_ms, self.p95_ms, self.max_ms
        )
    }
}

pub(crate) const SUMMARY_HEADER: &str = "| measurement | n | min ms | median ms | p95 ms | max ms | note |\n|---|---|---|---|---|---|---|";

// ------------------------------------------------------------------------- CPU split --

/// CPU seconds (user + system) of this process and of the PostgreSQL server (postmaster,
/// its live children and its reaped ones), to show on which side of the wire time goes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuSample {
    bench_seconds: f64,
    postgres_seconds: f64,
}

pub(crate) fn clock_ticks_per_second() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux we run on; `getconf` avoids unsafe code.
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// `(ppid, utime + stime, cutime + cstime)` in clock ticks, from `/proc/<pid>/stat`.
pub(crate) fn proc_times(pid: u32) -> Option<(u32, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; the fields after it are space-separated.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    let number = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<u64>().ok())
    };
    let parent = u32::try_from(number(1)?).ok()?;
    Some((parent, number(11)? + number(12)?, number(13)? + number(14)?))
}

/// The postmaster of the cluster in `directory`: the process whose command line names it.
pub(crate) fn find_postmaster(directory: &Path) -> Option<u32> {
    let data = directory.join("data");
    let needle = data.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|line| {
                    String::from_utf8_lossy(&line)
                        .replace('\0', " ")
                        .contains(&needle)
                })
                .unwrap_or(false)
        })
}

pub(crate) fn cpu_sample(postmaster: Option<u32>, ticks_per_second: f64) -> CpuSample {
    let bench = proc_times(std::process::id())
        .map(|(_, own, _)| own)
        .unwrap_or(0);
    let mut postgres = 0;
    if let Some(postmaster) = postmaster {
        if let Some((_, own, reaped)) = proc_times(postmaster) {
            postgres += own + reaped;
        }
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for pid in entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            {
                if let Some((parent, own, _)) = proc_times(pid)
                    && parent == postmaster
                {
                    postgres += own;
                }
            }
        }
    }
    CpuSample {
        bench_seconds: bench as f64 / ticks_per_second,
        postgres_seconds: postgres as f64 / ticks_per_second,
    }
}

/// CPU used between two samples, as a sentence for the report.
pub(crate) fn cpu_note(before: CpuSample, after: CpuSample, wall: Duration) -> String {
    let bench = after.bench_seconds - before.bench_seconds;
    let postgres = after.postgres_seconds - before.postgres_seconds;
    let wall = wall.as_secs_f64();
    format!(
        "CPU: this process (controller + agents) {bench:.1} s, PostgreSQL {postgres:.1} s, over {wall:.1} s wall \
         ({:.2} of 2 cores busy)",
        (bench + postgres) / wall
    )
}
