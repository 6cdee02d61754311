//! Running the filesystem as a separate process, and the power cut.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a mount may take to appear.
const MOUNT_WAIT: Duration = Duration::from_secs(10);

/// Whether `path` (absolute, canonical) is a mount point of this process's namespace.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let want = path.to_string_lossy();
    info.lines().any(|line| line.split(' ').nth(4) == Some(want.as_ref()))
}

/// Whether this process may mount FUSE filesystems here: root, and a `/dev/fuse`.
pub fn available() -> Result<(), &'static str> {
    if !rustix::process::geteuid().is_root() {
        return Err("needs root to mount a FUSE filesystem");
    }
    if !Path::new("/dev/fuse").exists() {
        return Err("needs /dev/fuse");
    }
    Ok(())
}

/// A mounted `sluice-lazyfs` process. Dropping it cuts the power too.
#[derive(Debug)]
pub struct LazyMount {
    child: Option<Child>,
    mount: PathBuf,
}

impl LazyMount {
    /// Starts `binary` serving `backing` at `mount` and waits until the mount is there. Its
    /// fsyncs are logged to `sync_log`, if given.
    pub fn start(
        binary: &Path,
        backing: &Path,
        mount: &Path,
        sync_log: Option<&Path>,
        log: Stdio,
    ) -> anyhow::Result<LazyMount> {
        std::fs::create_dir_all(backing)?;
        std::fs::create_dir_all(mount)?;
        let mount = mount.canonicalize()?;
        if is_mounted(&mount) {
            bail!("{} is already a mount point", mount.display());
        }
        let mut command = Command::new(binary);
        command.arg("--backing").arg(backing).arg("--mount").arg(&mount);
        if let Some(path) = sync_log {
            command.arg("--sync-log").arg(path);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut lazy = LazyMount { child: Some(child), mount };
        let deadline = Instant::now() + MOUNT_WAIT;
        while !is_mounted(&lazy.mount) {
            if let Some(child) = lazy.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("sluice-lazyfs exited with {status} before mounting {}", lazy.mount.display());
            }
            if Instant::now() > deadline {
                bail!("{} not mounted within {MOUNT_WAIT:?}", lazy.mount.display());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(lazy)
    }

    pub fn mount_point(&self) -> &Path {
        &self.mount
    }

    /// The power cut: the filesystem process dies with every unsynced write it held, and the
    /// mount (with the kernel's cached pages of it) goes. Kill the processes using the
    /// filesystem first, or they see I/O errors until they exit.
    pub fn power_cut(mut self) -> anyhow::Result<()> {
        self.cut()
    }

    fn cut(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait()?;
        }
        if is_mounted(&self.mount) {
            rustix::mount::unmount(&self.mount, rustix::mount::UnmountFlags::DETACH)
                .with_context(|| format!("unmounting {}", self.mount.display()))?;
        }
        Ok(())
    }
}

impl Drop for LazyMount {
    fn drop(&mut self) {
        let _ = self.cut();
    }
}
