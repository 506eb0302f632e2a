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
