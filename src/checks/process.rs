//! What the process uses and may use, as Linux tells it: open descriptors
//! against their soft limit, threads, and the memory cgroup's usage against
//! its limit. Everything is read from files under a root (`/` in use, a
//! directory of given contents in tests); nothing here decides pass or fail.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A count against the most there may be; `None` when nothing limits it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Usage {
    pub used: u64,
    pub limit: Option<u64>,
}

/// v1 writes a limit it does not enforce as a number near `i64::MAX`
/// (rounded down to a page); anything this large is no limit.
const NO_LIMIT: u64 = 1 << 62;

/// The file at `path` as seen from `root`.
fn read(root: &Path, path: &str) -> Result<String, String> {
    read_path(&root.join(path.trim_start_matches('/')))
}

fn read_path(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Open file descriptors (`/proc/self/fd`) against the soft limit on them
/// (`Max open files` in `/proc/self/limits`).
pub(crate) fn descriptors(root: &Path) -> Result<Usage, String> {
    let dir = root.join("proc/self/fd");
    let listing = fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    // The listing holds a descriptor of its own while it is read.
    let open = listing
        .count()
        .saturating_sub(usize::from(root == Path::new("/")));
    let limits = read(root, "/proc/self/limits")?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .ok_or("no `Max open files` in /proc/self/limits")?;
    let soft = line["Max open files".len()..].split_whitespace().next();
    let limit = match soft {
        Some("unlimited") => None,
        Some(n) => Some(n.parse().map_err(|_| format!("bad limit `{n}`"))?),
        None => return Err("no soft limit in `Max open files`".into()),
    };
    Ok(Usage {
        used: open as u64,
        limit,
    })
}

/// The process's threads (`Threads:` in `/proc/self/status`).
pub(crate) fn threads(root: &Path) -> Result<u64, String> {
    let status = read(root, "/proc/self/status")?;
    let count = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .ok_or("no `Threads:` in /proc/self/status")?;
    count
        .trim()
        .parse()
        .map_err(|_| format!("bad thread count `{}`", count.trim()))
}

/// Where the process's memory cgroup is, and which version it is.
#[derive(Debug, PartialEq, Eq)]
struct Cgroup {
    v2: bool,
    /// The cgroup's directory, and the mount point it lies under.
    dir: PathBuf,
    mount: PathBuf,
}

/// The memory cgroup's usage against the tightest limit on it and its
/// ancestors up to the mount; `Ok(None)` when no memory controller is
/// mounted where the process can see it (nothing to measure).
pub(crate) fn memory(root: &Path) -> Result<Option<Usage>, String> {
    let Some(cgroup) = find(root)? else {
        return Ok(None);
    };
    let (usage_file, limit_file) = match cgroup.v2 {
        true => ("memory.current", "memory.max"),
        false => ("memory.usage_in_bytes", "memory.limit_in_bytes"),
    };
    let number = |path: PathBuf| -> Result<Option<u64>, String> {
        let text = read_path(&path)?;
        match text.trim() {
            "max" => Ok(None),
            n => n
                .parse::<u64>()
                .map(|n| (n < NO_LIMIT).then_some(n))
                .map_err(|_| format!("bad number `{n}` in {}", path.display())),
        }
    };
    let used = number(cgroup.dir.join(usage_file))?.unwrap_or(0);
    let mut limit: Option<u64> = None;
    let mut dir = Some(cgroup.dir.as_path());
    while let Some(at) = dir.filter(|d| d.starts_with(&cgroup.mount)) {
        let file = at.join(limit_file);
        // The root cgroup has no limit file: nothing limits it.
        if file.exists() {
            if let Some(this) = number(file)? {
                limit = Some(limit.map_or(this, |l| l.min(this)));
            }
        }
        dir = at.parent();
    }
    Ok(Some(Usage { used, limit }))
}

/// The process's memory cgroup, from `/proc/self/cgroup` and the mount of
/// its controller in `/proc/self/mountinfo` (so it works on a host and in
/// a container with a cgroup namespace of its own alike).
fn find(root: &Path) -> Result<Option<Cgroup>, String> {
    let cgroups = read(root, "/proc/self/cgroup")?;
    let mut v1 = None;
    let mut v2 = None;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path);
        } else if id == "0" && controllers.is_empty() {
            v2 = Some(path);
        }
    }
    // Hybrid systems mount v2 without the memory controller: v1 first.
    let (is_v2, path) = match (v1, v2) {
        (Some(path), _) => (false, path),
        (None, Some(path)) => (true, path),
        (None, None) => return Ok(None),
    };
    let mountinfo = read(root, "/proc/self/mountinfo")?;
    for line in mountinfo.lines() {
        let Some((mount, fs)) = line.split_once(" - ") else {
            continue;
        };
        let mount: Vec<&str> = mount.split(' ').collect();
        let fs: Vec<&str> = fs.split(' ').collect();
        let (Some(mount_root), Some(point), Some(kind)) = (mount.get(3), mount.get(4), fs.first())
        else {
            continue;
        };
        let ours = match is_v2 {
            true => *kind == "cgroup2",
            false => {
                *kind == "cgroup"
                    && fs
                        .get(2)
                        .is_some_and(|o| o.split(',').any(|o| o == "memory"))
            }
        };
        if !ours {
            continue;
        }
        // The mount shows the hierarchy from `mount_root` down.
        let Some(below) = path.strip_prefix(mount_root.trim_end_matches('/')) else {
            continue;
        };
        let mount = root.join(point.trim_start_matches('/'));
        let dir = mount.join(below.trim_start_matches('/'));
        return Ok(Some(Cgroup {
            v2: is_v2,
            dir,
            mount,
        }));
    }
    Ok(None)
}

/// Creates, writes, syncs and removes a small file in `dir`, removing it
/// whatever fails after it was created.
pub(crate) fn write_file(dir: &Path) -> io::Result<()> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};

    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(".healthz-check-{}-{n}", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    let written = file.write_all(b"healthz\n").and_then(|()| file.sync_all());
    drop(file);
    let removed = fs::remove_file(&path);
    written.and(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake root with the given files, removed when dropped.
    struct Root(PathBuf);

    impl Root {
        fn new(name: &str, files: &[(&str, &str)]) -> Root {
            let dir =
                std::env::temp_dir().join(format!("healthz-root-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            for (path, text) in files {
                let path = dir.join(path);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, text).unwrap();
            }
            Root(dir)
        }
    }

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn v2_reads_current_against_the_tightest_max_up_to_the_mount() {
        let root = Root::new(
            "v2",
            &[
                ("proc/self/cgroup", "0::/system.slice/app.service\n"),
                (
                    "proc/self/mountinfo",
                    "30 1 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n",
                ),
                ("sys/fs/cgroup/system.slice/memory.max", "268435456\n"),
                ("sys/fs/cgroup/system.slice/app.service/memory.max", "max\n"),
                (
                    "sys/fs/cgroup/system.slice/app.service/memory.current",
                    "52428800\n",
                ),
            ],
        );
        let usage = memory(&root.0).unwrap().unwrap();
        assert_eq!(
            usage,
            Usage {
                used: 50 * MIB,
                limit: Some(256 * MIB)
            }
        );
    }

    #[test]
    fn v2_with_no_limit_anywhere_has_none() {
        let root = Root::new(
            "v2max",
            &[
                ("proc/self/cgroup", "0::/\n"),
                (
                    "proc/self/mountinfo",
                    "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
                ),
                ("sys/fs/cgroup/memory.current", "1000\n"),
            ],
        );
        assert_eq!(
            memory(&root.0).unwrap(),
            Some(Usage {
                used: 1000,
                limit: None
            })
        );
    }

    #[test]
    fn v1_reads_usage_against_limit_and_its_unlimited_value_is_no_limit() {
        let files = |limit: &'static str| {
            [
                (
                    "proc/self/cgroup",
                    "12:memory:/docker/abc\n11:cpu,cpuacct:/docker/abc\n0::/\n",
                ),
                (
                    "proc/self/mountinfo",
                    "25 1 0:22 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                     26 1 0:23 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu,cpuacct\n",
                ),
                (
                    "sys/fs/cgroup/memory/docker/abc/memory.usage_in_bytes",
                    "33554432\n",
                ),
                (
                    "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
                    limit,
                ),
            ]
        };
        let root = Root::new("v1", &files("67108864\n"));
        let usage = memory(&root.0).unwrap().unwrap();
        assert_eq!(
            usage,
            Usage {
                used: 32 * MIB,
                limit: Some(64 * MIB)
            }
        );
        let root = Root::new("v1unlimited", &files("9223372036854771712\n"));
        assert_eq!(memory(&root.0).unwrap().unwrap().limit, None);
    }

    #[test]
    fn a_cgroup_namespace_mounts_the_processs_own_cgroup_at_the_root() {
        // In a container: the cgroup file says `/`, the mount's root is the
        // container's cgroup.
        let root = Root::new(
            "ns",
            &[
                ("proc/self/cgroup", "0::/\n"),
                (
                    "proc/self/mountinfo",
                    "40 30 0:26 / /sys/fs/cgroup ro - cgroup2 cgroup rw\n",
                ),
                ("sys/fs/cgroup/memory.max", "134217728\n"),
                ("sys/fs/cgroup/memory.current", "1048576\n"),
            ],
        );
        let usage = memory(&root.0).unwrap().unwrap();
        assert_eq!(
            usage,
            Usage {
                used: MIB,
                limit: Some(128 * MIB)
            }
        );
    }

    #[test]
    fn no_memory_controller_is_nothing_to_measure_and_a_missing_file_says_which() {
        let none = Root::new(
            "none",
            &[
                ("proc/self/cgroup", "3:cpu:/\n"),
                ("proc/self/mountinfo", ""),
            ],
        );
        assert_eq!(memory(&none.0), Ok(None));
        let missing = Root::new(
            "missing",
            &[
                ("proc/self/cgroup", "0::/app\n"),
                (
                    "proc/self/mountinfo",
                    "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
                ),
            ],
        );
        let error = memory(&missing.0).unwrap_err();
        let file = Path::new("app").join("memory.current");
        assert!(error.contains(&file.display().to_string()), "{error}");
        let nothing = Root::new("nothing", &[]);
        assert!(memory(&nothing.0).unwrap_err().contains("proc/self/cgroup"));
    }

    #[test]
    fn descriptors_and_threads_are_read_from_proc() {
        let root = Root::new(
            "proc",
            &[
                (
                    "proc/self/limits",
                    "Limit                     Soft Limit           Hard Limit           Units\n\
                     Max open files            1024                 4096                 files\n",
                ),
                ("proc/self/fd/0", ""),
                ("proc/self/fd/1", ""),
                ("proc/self/fd/2", ""),
                ("proc/self/status", "Name:\tx\nThreads:\t7\n"),
            ],
        );
        assert_eq!(
            descriptors(&root.0),
            Ok(Usage {
                used: 3,
                limit: Some(1024)
            })
        );
        assert_eq!(threads(&root.0), Ok(7));
    }
}
