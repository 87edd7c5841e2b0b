//! The process's measured memory, from `/proc/self/status` (Linux): peak and current resident
//! set, split into anonymous and file-backed pages.

/// Memory figures of a process, in bytes. Zero where the system does not report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcessMemory {
    /// Peak resident set size (`VmHWM`).
    pub peak_rss: u64,
    /// Current resident set size (`VmRSS`).
    pub rss: u64,
    /// Resident anonymous memory (`RssAnon`).
    pub rss_anon: u64,
    /// Resident file-backed memory (`RssFile`), e.g. mapped model weights.
    pub rss_file: u64,
}

impl ProcessMemory {
    /// Reads this process's figures.
    pub fn current() -> ProcessMemory {
        std::fs::read_to_string("/proc/self/status")
            .map(|text| ProcessMemory::parse(&text))
            .unwrap_or_default()
    }

    /// Parses the text of a `/proc/<pid>/status` file.
    pub fn parse(status: &str) -> ProcessMemory {
        let mut m = ProcessMemory::default();
        for line in status.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let kib: u64 = value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or(0);
            let bytes = kib.saturating_mul(1024);
            match key {
                "VmHWM" => m.peak_rss = bytes,
                "VmRSS" => m.rss = bytes,
                "RssAnon" => m.rss_anon = bytes,
                "RssFile" => m.rss_file = bytes,
                _ => {}
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let m = ProcessMemory::parse(
            "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t1024 kB\nRssAnon:\t 512 kB\nRssFile:\t256 kB\n",
        );
        assert_eq!(m.peak_rss, 2048 * 1024);
        assert_eq!(m.rss, 1024 * 1024);
        assert_eq!(m.rss_anon, 512 * 1024);
        assert_eq!(m.rss_file, 256 * 1024);
    }

    #[test]
    fn reads_own_status() {
        let m = ProcessMemory::current();
        assert!(m.peak_rss >= m.rss && m.rss > 0);
    }
}
