//! Resident memory of this process, read from `/proc/self/status`.
//!
//! Why: the embedded default must idle at ≤ 20 MB RSS (a bar of the product); logging `VmRSS` at
//! startup makes that bar checkable from the log without extra tools.

/// `VmRSS` of this process in KiB, if the platform has `/proc/self/status`.
pub fn vm_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_status_line() {
        assert_eq!(parse_vm_rss("Name:\tx\nVmRSS:\t  12345 kB\n"), Some(12345));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }
}
