//! `kimaki upgrade --from FILE` replaces the executable and restarts the running instance in
//! place with the same flags; a file that is not kimaki is refused.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::kimaki_bin::{Kimaki, BIN};

#[test]
fn upgrade_replaces_the_binary_and_restarts_with_the_same_flags() {
    let mut k = Kimaki::new();
    let bin_dir = k.home.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let installed = bin_dir.join("kimaki");
    std::fs::copy(BIN, &installed).unwrap();
    k.bin = installed.clone();
    // A "new release": the same program with different bytes (trailing data does not change
    // how an ELF runs), so the file's identity tells which one runs.
    let release = k.home.path().join("kimaki-new");
    let mut bytes = std::fs::read(BIN).unwrap();
    bytes.extend_from_slice(b"\0new release marker\0");
    std::fs::write(&release, &bytes).unwrap();
    std::fs::set_permissions(
        &release,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let mut d = k.start(&["--set", "KIMAKI_LOG_LEVEL=debug"]);
    let first = d.wait_ready();
    let old_inode = std::fs::metadata(format!("/proc/{}/exe", d.pid()))
        .unwrap()
        .ino();
    assert_eq!(old_inode, std::fs::metadata(&installed).unwrap().ino());

    let out = k.run(&["upgrade", "--from", release.to_str().unwrap(), "--json"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let report = out.json();
    assert_eq!(report["restarted"], true);
    assert_eq!(report["version"], env!("CARGO_PKG_VERSION"));
    let second = d.wait_ready();
    assert_eq!(first["pid"], second["pid"], "restarted in place");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        bytes,
        "the new release is installed"
    );
    let new_inode = std::fs::metadata(format!("/proc/{}/exe", d.pid()))
        .unwrap()
        .ino();
    assert_ne!(
        new_inode, old_inode,
        "the running process executes the new file"
    );
    assert_eq!(new_inode, std::fs::metadata(&installed).unwrap().ino());
    assert!(
        k.log().contains("KIMAKI_LOG_LEVEL=debug (flag)"),
        "flags kept:\n{}",
        k.log()
    );

    // Not a kimaki: refused, nothing replaced.
    let junk = k.home.path().join("not-kimaki");
    std::fs::write(&junk, "#!/bin/sh\necho hello\n").unwrap();
    std::fs::set_permissions(&junk, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = k.run(&["upgrade", "--from", junk.to_str().unwrap()]);
    assert_eq!(out.code(), 64, "{}", out.all());
    assert!(out.stderr.contains("not a kimaki executable"));
    assert_eq!(std::fs::read(&installed).unwrap(), bytes);

    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
