//! CPU and memory use of the machine (or the container, where cgroup limits say so), for the
//! adaptive pool. Linux only: elsewhere every reading is unknown, which the pool treats as fine.

use std::path::Path;

/// Where load readings come from; a fixed source in tests.
pub trait LoadSource: Send + 'static {
    /// CPU busy fraction since the previous call (0.0-1.0) and memory in use (0.0-1.0); `None`
    /// when unknown.
    fn sample(&mut self) -> (Option<f64>, Option<f64>);
}

/// Reads `/proc/stat` and cgroup v2 `memory.max`/`memory.current`, else `/proc/meminfo`.
#[derive(Debug, Default)]
pub struct ProcLoad {
    /// Busy and total CPU time at the previous sample.
    last: Option<(u64, u64)>,
}

impl LoadSource for ProcLoad {
    fn sample(&mut self) -> (Option<f64>, Option<f64>) {
        let cpu = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| cpu_times(&s))
            .and_then(|now| {
                let prev = self.last.replace(now);
                cpu_fraction(prev?, now)
            });
        (cpu, memory_fraction(Path::new("/")))
    }
}

/// Busy and total jiffies from the `cpu` line of `/proc/stat`: user nice system idle iowait irq
/// softirq steal. Idle and iowait are idle; steal counts as busy (the CPU is not ours to use).
pub fn cpu_times(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v[4];
    Some((total - idle, total))
}

/// The busy share between two readings of [`cpu_times`].
pub fn cpu_fraction(prev: (u64, u64), now: (u64, u64)) -> Option<f64> {
    let total = now.1.checked_sub(prev.1)?;
    let busy = now.0.checked_sub(prev.0)?;
    (total > 0).then(|| busy as f64 / total as f64)
}

/// Memory in use: the cgroup's usage over its limit when it has one, else the machine's
/// (`MemTotal - MemAvailable`) over `MemTotal`. `root` is `/` except in tests.
pub fn memory_fraction(root: &Path) -> Option<f64> {
    let read = |p: &str| std::fs::read_to_string(root.join(p)).ok();
    if let (Some(max), Some(cur)) = (
        read("sys/fs/cgroup/memory.max"),
        read("sys/fs/cgroup/memory.current"),
    ) && let (Ok(max), Ok(cur)) = (max.trim().parse::<u64>(), cur.trim().parse::<u64>())
        && max > 0
    {
        return Some(cur as f64 / max as f64);
    }
    meminfo_fraction(&read("proc/meminfo")?)
}

/// `(MemTotal - MemAvailable) / MemTotal` from `/proc/meminfo`.
pub fn meminfo_fraction(meminfo: &str) -> Option<f64> {
    let field = |name: &str| {
        meminfo
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    let total = field("MemTotal:")?;
    let available = field("MemAvailable:")?;
    (total > 0).then(|| total.saturating_sub(available) as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let a = cpu_times("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4 5\n").unwrap();
        assert_eq!(a, (200, 1000));
        let b = cpu_times("cpu  250 0 150 850 150 0 0 0 0 0\n").unwrap();
        assert_eq!(cpu_fraction(a, b), Some(0.5));
        assert_eq!(cpu_fraction(b, b), None);
        assert_eq!(cpu_times("intr 1 2"), None);
        let m = "MemTotal:       1000 kB\nMemFree:  10 kB\nMemAvailable:    250 kB\n";
        assert_eq!(meminfo_fraction(m), Some(0.75));
        assert_eq!(meminfo_fraction("MemTotal: 5 kB"), None);
    }

    #[test]
    fn cgroup_limit_wins_over_meminfo() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sys/fs/cgroup")).unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::write(
            dir.path().join("proc/meminfo"),
            "MemTotal: 100 kB\nMemAvailable: 90 kB\n",
        )
        .unwrap();
        assert_eq!(memory_fraction(dir.path()), Some(0.1));
        std::fs::write(dir.path().join("sys/fs/cgroup/memory.max"), "max\n").unwrap();
        std::fs::write(dir.path().join("sys/fs/cgroup/memory.current"), "50\n").unwrap();
        assert_eq!(memory_fraction(dir.path()), Some(0.1), "no cgroup limit");
        std::fs::write(dir.path().join("sys/fs/cgroup/memory.max"), "200\n").unwrap();
        assert_eq!(memory_fraction(dir.path()), Some(0.25));
    }
}
