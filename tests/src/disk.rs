//! A small real filesystem of its own (tmpfs, needs root as in CI), for tests
//! of a full disk: fill it, then give the space back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct SmallDisk {
    pub path: PathBuf,
    filler: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `megabytes` at a fresh directory under `parent`.
    pub fn mount(parent: &Path, megabytes: u32) -> SmallDisk {
        let path = parent.join("small-disk");
        std::fs::create_dir_all(&path).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mounting a tmpfs at {} failed: disk-full tests need root (as CI has)",
            path.display()
        );
        let filler = path.join("filler");
        SmallDisk { path, filler }
    }

    /// Writes a file until the filesystem refuses: the disk is full.
    pub fn fill(&self) {
        let mut file = std::fs::File::create(&self.filler).expect("filler file");
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        // Whatever a partial block left, one byte at a time.
        while file.write_all(&[0]).is_ok() {}
    }

    /// Gives the space back.
    pub fn free(&self) {
        let _ = std::fs::remove_file(&self.filler);
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a daemon still holding files must not keep the mount alive.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
