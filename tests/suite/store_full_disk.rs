//! A full disk: kimaki's data dir on a 3 MiB tmpfs, filled by large prompts. Sends that no
//! longer fit fail at once with a message that says what happened and what to do, kimaki still
//! stops promptly (sled's own flush would wait forever), and after space is freed and kimaki
//! restarted, every send that was acknowledged is there and new work is taken again.
//! The tmpfs needs root (mount); CI runs as root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kimaki::core::{JobId, JobQueue};
use kimaki::store::Store;

use crate::support::kimaki_bin::{Kimaki, Output};

/// A small tmpfs, unmounted (lazily) when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "this test needs root to mount a small tmpfs (the full disk): mount exited {status}"
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount exited {status}");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// `kimaki send --json` of `prompt` to `project`. The runner does not exist: the job fails
/// when it runs, after its enqueue (what this test is about) was acknowledged.
fn send(k: &Kimaki, project: &Path, prompt: &str) -> Output {
    k.run(&[
        "send",
        "--project",
        project.to_str().unwrap(),
        "--runner",
        "no-such-runner",
        "--prompt",
        prompt,
        "--json",
    ])
}

fn big_prompt(i: usize) -> String {
    // 100 KB that does not compress away: sled stores values as they are.
    let mut s = format!("job {i}: ");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ i as u64;
    while s.len() < 100_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(&format!("{x:016x}"));
    }
    s
}

#[test]
fn a_full_disk_refuses_new_work_clearly_and_loses_nothing_acknowledged() {
    let disk = SmallDisk::mount("3m");
    let mut k = Kimaki::new();
    k.data_dir = disk.path().join("data");
    // The project lives off the small disk: only kimaki's store fills it.
    let project_home = tempfile::tempdir().unwrap();
    let project: PathBuf = project_home.path().join("project");
    std::fs::create_dir_all(&project).unwrap();

    let mut d = k.start(&[]);
    d.wait_ready();
    let add = k.run(&["project", "add", project.to_str().unwrap()]);
    assert_eq!(add.code(), 0, "{}", add.all());

    let mut acked: Vec<JobId> = Vec::new();
    let mut refused = None;
    for i in 0..60 {
        let out = send(&k, &project, &big_prompt(i));
        if out.code() == 0 {
            acked.push(JobId::new(out.json()["job_id"].as_str().unwrap()));
        } else {
            refused = Some(out);
            break;
        }
    }
    let refused = refused.expect("a 3 MiB disk cannot hold 60 prompts of 100 KB");
    assert!(!acked.is_empty(), "some sends fit before the disk filled");
    let err = refused.all();
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("can no longer write"), "{err}");
    assert!(err.contains("free some space"), "{err}");
    assert!(err.contains("restart kimaki"), "{err}");

    // Later sends fail at once with the same explanation, small ones too.
    let t0 = Instant::now();
    let again = send(&k, &project, "small");
    assert_ne!(again.code(), 0);
    assert!(
        again.all().contains("can no longer write"),
        "{}",
        again.all()
    );
    assert!(t0.elapsed() < Duration::from_secs(10));

    // `status` says so first.
    let status = k.run(&["status", "--json"]).json();
    let store = &status["adapters"][0];
    assert_eq!(store["name"], "store", "{status}");
    assert_eq!(store["state"], "failed", "{status}");
    assert!(
        store["detail"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{status}"
    );

    // Stopping does not hang on the flush that can never finish.
    let stop = k.run(&["stop"]);
    assert_eq!(stop.code(), 0, "{}", stop.all());
    d.wait_exit(Duration::from_secs(20));

    // Space freed, restarted: every acknowledged job is there, and new work is taken.
    disk.grow("64m");
    let mut d = k.start(&[]);
    d.wait_ready();
    let out = send(&k, &project, "after the disk was freed");
    assert_eq!(out.code(), 0, "{}", out.all());
    let stop = k.run(&["stop"]);
    assert_eq!(stop.code(), 0, "{}", stop.all());
    d.wait_exit(Duration::from_secs(20));

    let queue = JobQueue::new(Store::open(&k.path("store")).unwrap());
    for (i, id) in acked.iter().enumerate() {
        let record = queue
            .get(id)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged job {i} ({id}) is missing"));
        assert!(record.job.prompt.starts_with(&format!("job {i}: ")));
    }
}
