//! The memory check against a real memory cgroup: as root, a child cgroup
//! with a 256 MiB limit is made under this process's own (found as the
//! check finds it), and a child process (this test binary, running the
//! ignored `child_in_a_limited_cgroup`) moves itself into it, reads the
//! limit back, allocates past the check's share and frees it again. Where
//! no such cgroup can be made (not root, no memory controller, another
//! kind of system) the test says so plainly and checks nothing more.
#![cfg(target_os = "linux")]

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use healthz::checks;

const LIMIT: u64 = 256 << 20;
const CHILD: &str = "HEALTHZ_TEST_CGROUP";

/// This process's memory cgroup directory, v1 or v2, found as the check does
/// for the plain case of the controller mounted at its hierarchy's root.
fn own_cgroup() -> Result<(PathBuf, bool), String> {
    let cgroups = fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let v1 = cgroups.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then_some(path)
    });
    let (path, v2) = match v1 {
        Some(path) => (path, false),
        None => (
            cgroups
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .ok_or("no cgroup")?,
            true,
        ),
    };
    let mount = mountinfo
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let fs: Vec<&str> = right.split(' ').collect();
            let ours = match v2 {
                true => fs[0] == "cgroup2",
                false => fs[0] == "cgroup" && fs.get(2)?.split(',').any(|o| o == "memory"),
            };
            (ours && fields[3] == "/").then(|| fields[4].to_string())
        })
        .ok_or("no memory controller mounted at its root")?;
    Ok((PathBuf::from(mount).join(path.trim_start_matches('/')), v2))
}

/// A child cgroup with the limit, removed when dropped.
struct Limited(PathBuf);

impl Limited {
    fn make() -> Result<Limited, String> {
        let (own, v2) = own_cgroup()?;
        let dir = own.join(format!("healthz-test-{}", std::process::id()));
        fs::create_dir(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        let limited = Limited(dir);
        let file = if v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        fs::write(limited.0.join(file), LIMIT.to_string())
            .map_err(|e| format!("cannot set {file}: {e}"))?;
        Ok(limited)
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

#[test]
fn the_memory_check_reads_a_real_cgroups_limit_and_fails_past_its_share() {
    let limited = match Limited::make() {
        Ok(limited) => limited,
        Err(why) => {
            println!("SKIP: no memory cgroup can be made here: {why}");
            return;
        }
    };
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_in_a_limited_cgroup",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD, &limited.0)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the child failed");
    assert!(stdout.contains("1 passed"), "the child ran");
}

/// Run by the test above, in a child process: moves itself into the
/// limited cgroup, then checks its memory three times.
#[test]
#[ignore = "run in a child process by the test above"]
fn child_in_a_limited_cgroup() {
    let dir = PathBuf::from(std::env::var(CHILD).expect("run by the test above"));
    fs::write(dir.join("cgroup.procs"), std::process::id().to_string()).unwrap();
    // A share of 0 fails whatever is used: its reason reads the limit back.
    let read_back = checks::memory("memory", 0).run_now().unwrap_err();
    println!("share 0: {read_back}");
    assert!(read_back.contains(" of 256.0 MiB used"), "{read_back}");
    let check = checks::memory("memory", 50);
    assert_eq!(check.run_now(), Ok(()), "a small process is under half");
    // 160 MiB, a byte written in every page, so every page is charged.
    let mut held = vec![0u8; 160 << 20];
    for page in held.chunks_mut(4096) {
        page[0] = 7;
    }
    let over = check.run_now().unwrap_err();
    println!("holding 160 MiB: {over}");
    assert!(over.contains(" of 256.0 MiB used ("), "{over}");
    assert!(over.ends_with(" %) is over 50 %"), "{over}");
    drop(std::hint::black_box(held));
    assert_eq!(check.run_now(), Ok(()), "freed, it passes again");
}
