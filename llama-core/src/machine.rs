//! The memory this process can really have: the machine's physical memory (`/proc/meminfo`)
//! and the limit of the memory cgroup it runs in (a container's): cgroup v2's `memory.max`, or
//! cgroup v1's `memory.limit_in_bytes`, on its own cgroup and every ancestor (a parent's limit
//! applies to its children too).
//!
//! A budget above these cannot be honoured (llama.cpp would fail to allocate, or the kernel
//! would kill the process), so the run path clamps `--max-mem` to them, and inside a container
//! with a limit, a run without `--max-mem` plans for that limit minus a margin.

use std::path::{Path, PathBuf};

/// A memory limit on this process and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CgroupLimit {
    /// The limit in bytes.
    pub bytes: u64,
    /// The file it was read from (`.../memory.max` or `.../memory.limit_in_bytes`).
    pub file: PathBuf,
}

/// The machine's memory as this process sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MachineMemory {
    /// Physical memory (`MemTotal`), 0 when unknown.
    pub physical: u64,
    /// The tightest memory-cgroup limit below the physical memory, if any.
    pub cgroup: Option<CgroupLimit>,
}

impl MachineMemory {
    /// Reads `/proc` and the cgroup file systems. `LLAMA_RS_PROC_ROOT` (a directory holding
    /// `meminfo`, `self/cgroup`, `self/mountinfo`) stands in for `/proc` in tests.
    pub fn read() -> MachineMemory {
        let root = std::env::var_os("LLAMA_RS_PROC_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/proc"));
        let read = |p: &Path| std::fs::read_to_string(p).ok();
        let physical = read(&root.join("meminfo"))
            .and_then(|t| parse_meminfo_total(&t))
            .unwrap_or(0);
        let cgroup = match (
            read(&root.join("self/cgroup")),
            read(&root.join("self/mountinfo")),
        ) {
            (Some(cgroups), Some(mounts)) => cgroup_limit(&cgroups, &mounts, read),
            _ => None,
        }
        .filter(|limit| physical == 0 || limit.bytes < physical);
        MachineMemory { physical, cgroup }
    }

    /// The most memory the process can have: the cgroup limit, else the physical memory
    /// (`None` when neither is known).
    pub fn limit(&self) -> Option<u64> {
        match (&self.cgroup, self.physical) {
            (Some(c), _) => Some(c.bytes),
            (None, 0) => None,
            (None, p) => Some(p),
        }
    }

    /// Where [`limit`](Self::limit) comes from, for messages.
    pub fn describe(&self) -> String {
        match &self.cgroup {
            Some(c) => format!(
                "the memory limit of this process's cgroup ({}, {})",
                crate::ByteSize(c.bytes),
                c.file.display()
            ),
            None => format!(
                "this machine's physical memory ({})",
                crate::ByteSize(self.physical)
            ),
        }
    }

    /// The budget a run without `--max-mem` gets inside a cgroup with a limit: the limit less
    /// a margin for the rest of the process tree ([`default_margin`]). `None` outside one.
    pub fn default_budget(&self) -> Option<u64> {
        self.cgroup
            .as_ref()
            .map(|c| c.bytes.saturating_sub(default_margin(c.bytes)))
    }
}

/// The number of physical CPU cores this process may use: logical CPUs that share a core
/// (`/sys/devices/system/cpu/cpuN/topology/thread_siblings_list`) count once. `None` where
/// the topology cannot be read.
pub fn physical_cores() -> Option<usize> {
    let allowed = std::thread::available_parallelism().ok()?.get();
    let mut cores = std::collections::HashSet::new();
    for entry in std::fs::read_dir("/sys/devices/system/cpu").ok()?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name
            .strip_prefix("cpu")
            .is_none_or(|n| n.parse::<u32>().is_err())
        {
            continue;
        }
        if let Ok(siblings) =
            std::fs::read_to_string(entry.path().join("topology/thread_siblings_list"))
        {
            cores.insert(siblings.trim().to_string());
        }
    }
    (!cores.is_empty()).then(|| cores.len().min(allowed))
}

/// What a default budget leaves of a cgroup's limit: a sixteenth, at least 32 MiB.
pub fn default_margin(limit: u64) -> u64 {
    (limit / 16).max(32 << 20)
}

/// `MemTotal` from `/proc/meminfo` text, in bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The tightest memory limit over the process's cgroup and its ancestors, from the text of
/// `/proc/self/cgroup` and `/proc/self/mountinfo`, reading limit files through `read`.
pub fn cgroup_limit(
    cgroups: &str,
    mountinfo: &str,
    read: impl Fn(&Path) -> Option<String>,
) -> Option<CgroupLimit> {
    let mut best: Option<CgroupLimit> = None;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (mount, file) = if controllers.is_empty() {
            (
                mount_point(mountinfo, |fs, _| fs == "cgroup2"),
                "memory.max",
            )
        } else if controllers.split(',').any(|c| c == "memory") {
            (
                mount_point(mountinfo, |fs, opts| {
                    fs == "cgroup" && opts.split(',').any(|o| o == "memory")
                }),
                "memory.limit_in_bytes",
            )
        } else {
            continue;
        };
        let Some((mount, root)) = mount else { continue };
        // The cgroup path is relative to the hierarchy's root; the mount shows `root` of it.
        let relative = Path::new(path)
            .strip_prefix(&root)
            .unwrap_or(Path::new(path))
            .to_path_buf();
        let relative = relative
            .strip_prefix("/")
            .unwrap_or(&relative)
            .to_path_buf();
        let mut dir = mount.join(&relative);
        loop {
            let limit_file = dir.join(file);
            if let Some(bytes) = read(&limit_file).and_then(|t| parse_limit(&t)) {
                if best.as_ref().is_none_or(|b| bytes < b.bytes) {
                    best = Some(CgroupLimit {
                        bytes,
                        file: limit_file,
                    });
                }
            }
            if dir == mount || !dir.pop() || !dir.starts_with(&mount) {
                break;
            }
        }
    }
    best
}

/// A limit file's value: `max` (v2) or a huge number (v1's "unlimited") mean no limit.
fn parse_limit(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "max" {
        return None;
    }
    let bytes: u64 = text.parse().ok()?;
    // cgroup v1 reports "unlimited" as the largest page-aligned value.
    (bytes < (1 << 62)).then_some(bytes)
}

/// The mount point and root (within its hierarchy) of the first mount whose file system type
/// and super options match.
fn mount_point(
    mountinfo: &str,
    matches: impl Fn(&str, &str) -> bool,
) -> Option<(PathBuf, PathBuf)> {
    mountinfo.lines().find_map(|line| {
        // `ID PARENT MAJ:MIN ROOT MOUNT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS`
        let (before, after) = line.split_once(" - ")?;
        let fields: Vec<&str> = before.split_whitespace().collect();
        let mut tail = after.split_whitespace();
        let (fs, _source, opts) = (tail.next()?, tail.next()?, tail.next().unwrap_or(""));
        (fields.len() >= 5 && matches(fs, opts))
            .then(|| (PathBuf::from(fields[4]), PathBuf::from(fields[3])))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn reader(files: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
        let map: HashMap<PathBuf, String> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect();
        move |p: &Path| map.get(p).cloned()
    }

    #[test]
    fn cgroup_v2_limit_of_a_container() {
        let cgroups = "0::/docker/abc\n";
        let mounts = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let read = reader(&[
            ("/sys/fs/cgroup/docker/abc/memory.max", "2147483648\n"),
            ("/sys/fs/cgroup/docker/memory.max", "max\n"),
        ]);
        let limit = cgroup_limit(cgroups, mounts, read).unwrap();
        assert_eq!(limit.bytes, 2 << 30);
        assert_eq!(
            limit.file,
            PathBuf::from("/sys/fs/cgroup/docker/abc/memory.max")
        );
    }

    #[test]
    fn a_parent_limit_applies_and_unlimited_is_ignored() {
        // cgroup v1 memory controller, as on hybrid hosts; the parent is tighter.
        let cgroups = "4:memory:/jobs/one\n0::/\n";
        let mounts = "40 31 0:33 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let read = reader(&[
            (
                "/sys/fs/cgroup/memory/jobs/one/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            (
                "/sys/fs/cgroup/memory/jobs/memory.limit_in_bytes",
                "1073741824\n",
            ),
        ]);
        assert_eq!(cgroup_limit(cgroups, mounts, read).unwrap().bytes, 1 << 30);
        // Inside a container the hierarchy's root is mounted where the container's cgroup is.
        let inside = "41 31 0:33 /jobs/one /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let read = reader(&[("/sys/fs/cgroup/memory/memory.limit_in_bytes", "536870912\n")]);
        assert_eq!(
            cgroup_limit(cgroups, inside, read).unwrap().bytes,
            512 << 20
        );
        assert_eq!(cgroup_limit("0::/\n", "", reader(&[])), None);
    }

    #[test]
    fn meminfo_and_margins() {
        assert_eq!(
            parse_meminfo_total("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24576000 * 1024)
        );
        assert_eq!(default_margin(1 << 30), 64 << 20);
        assert_eq!(default_margin(256 << 20), 32 << 20);
        let m = MachineMemory {
            physical: 8 << 30,
            cgroup: Some(CgroupLimit {
                bytes: 1 << 30,
                file: "x".into(),
            }),
        };
        assert_eq!(m.limit(), Some(1 << 30));
        assert_eq!(m.default_budget(), Some((1 << 30) - (64 << 20)));
        let bare = MachineMemory {
            physical: 8 << 30,
            cgroup: None,
        };
        assert_eq!((bare.limit(), bare.default_budget()), (Some(8 << 30), None));
    }
}
