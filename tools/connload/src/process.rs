//! The server process as the load program sees it: its pid (given, or found by the port it
//! listens on), its resident memory, and this process's open-files limit.

use std::collections::HashSet;

use anyhow::{Context, bail};

/// Resident memory of one process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Memory {
    /// `VmRSS`: resident now, KiB.
    pub rss_kib: u64,
    /// `VmHWM`: the most ever resident, KiB.
    pub hwm_kib: u64,
}

/// Reads `VmRSS` and `VmHWM` of `pid` (`"self"` for this process).
pub fn memory(pid: &str) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in {path}"))
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// The pid of the process listening on TCP `port`: the socket's inode from `/proc/net/tcp*`,
/// then the process holding that inode among `/proc/*/fd`.
pub fn pid_listening_on(port: u16) -> anyhow::Result<u32> {
    let inodes = listening_inodes(port)?;
    if inodes.is_empty() {
        bail!("nothing listens on port {port} (per /proc/net/tcp and tcp6)");
    }
    let wanted: HashSet<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc")
        .context("reading /proc")?
        .flatten()
    {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes of other users, or gone meanwhile, are simply skipped.
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && wanted.contains(target.to_string_lossy().as_ref())
            {
                return Ok(pid);
            }
        }
    }
    bail!("no readable process holds the socket listening on port {port}; pass --server-pid")
}

/// Inodes of sockets in state LISTEN (`0A`) on `port`.
fn listening_inodes(port: u16) -> anyhow::Result<Vec<String>> {
    let mut inodes = Vec::new();
    let hex_port = format!("{port:04X}");
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if cols.len() > 9
                && cols[3] == "0A"
                && cols[1].rsplit(':').next() == Some(hex_port.as_str())
            {
                inodes.push(cols[9].to_owned());
            }
        }
    }
    Ok(inodes)
}

/// The open-files limit of this process after raising the soft limit to the hard one.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct FileLimit {
    /// Soft limit in force (what `EMFILE` is measured against).
    pub soft: u64,
    /// Hard limit (`ulimit -Hn`): the ceiling no unprivileged process can pass.
    pub hard: u64,
}

/// Raises `RLIMIT_NOFILE`'s soft limit to the hard limit and returns both.
pub fn raise_file_limit() -> anyhow::Result<FileLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` into the struct we own and pass by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `setrlimit` only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    Ok(FileLimit {
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
    })
}

/// CPU time `pid` has used (user + system), in seconds, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name (which may hold spaces), from field 3 (state) on.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("unexpected {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("unexpected {path}"))
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state.
    Ok((ticks(11)? + ticks(12)?) as f64 / clock_ticks())
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
fn clock_ticks() -> f64 {
    // SAFETY: `sysconf` only reads its argument.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// The machine's CPU counters from the first line of `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy)]
pub struct MachineCpu {
    busy: u64,
    steal: u64,
    total: u64,
}

/// Reads [`MachineCpu`] now.
pub fn machine_cpu() -> anyhow::Result<MachineCpu> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    // cpu user nice system idle iowait irq softirq steal guest guest_nice
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    if v.len() < 8 {
        anyhow::bail!("unexpected /proc/stat: {line}");
    }
    // Guest time is already counted in user and nice.
    let total: u64 = v[..8].iter().sum();
    let idle = v[3] + v[4];
    Ok(MachineCpu {
        busy: total - idle - v[7],
        steal: v[7],
        total,
    })
}

/// Machine CPU use between two readings, in percent of all cores: (busy, steal).
pub fn machine_percent(from: MachineCpu, to: MachineCpu) -> (f64, f64) {
    let total = to.total.saturating_sub(from.total).max(1) as f64;
    (
        to.busy.saturating_sub(from.busy) as f64 * 100.0 / total,
        to.steal.saturating_sub(from.steal) as f64 * 100.0 / total,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let m = memory("self").unwrap();
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib, "{m:?}");
        assert!(cpu_seconds("self").unwrap() >= 0.0);
        let limit = raise_file_limit().unwrap();
        assert_eq!(limit.soft, limit.hard);
    }

    #[test]
    fn machine_percentages_between_readings() {
        let from = MachineCpu {
            busy: 100,
            steal: 10,
            total: 1000,
        };
        let to = MachineCpu {
            busy: 150,
            steal: 30,
            total: 1200,
        };
        assert_eq!(machine_percent(from, to), (25.0, 10.0));
    }
}
