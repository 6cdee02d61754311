//! The FUSE side: inodes are paths under the backing directory; data writes go to
//! [`Unsynced`] until an fsync.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, Request, WriteFlags,
};

use crate::overlay::Unsynced;

/// How long the kernel may cache names and attributes: every change goes through this process,
/// and a power cut unmounts, which drops the kernel's caches with the mount.
const TTL: Duration = Duration::from_secs(1);

/// `fallocate` mode bits this filesystem understands.
const FALLOC_FL_KEEP_SIZE: i32 = 1;

fn errno(e: &io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_i32)
}

/// Inode numbers of the paths seen so far, and the unsynced data of the files written.
#[derive(Debug, Default)]
struct State {
    paths: HashMap<u64, PathBuf>,
    inodes: HashMap<PathBuf, u64>,
    next_ino: u64,
    files: HashMap<u64, Arc<File>>,
    unsynced: HashMap<u64, Unsynced>,
    unsynced_bytes: u64,
}

impl State {
    fn intern(&mut self, path: &Path) -> u64 {
        if let Some(&ino) = self.inodes.get(path) {
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.paths.insert(ino, path.to_path_buf());
        self.inodes.insert(path.to_path_buf(), ino);
        ino
    }

    fn path(&self, ino: u64) -> Result<&Path, Errno> {
        self.paths.get(&ino).map(PathBuf::as_path).ok_or(Errno::ENOENT)
    }

    /// Forgets `path` and what was unsynced in it (it was removed or replaced).
    fn forget(&mut self, path: &Path) {
        if let Some(ino) = self.inodes.remove(path) {
            self.paths.remove(&ino);
            self.files.remove(&ino);
            if let Some(u) = self.unsynced.remove(&ino) {
                self.unsynced_bytes -= u.bytes();
            }
        }
    }
}

/// The most lines a sync log takes; later fsyncs are not logged (the log says so once).
const SYNC_LOG_LINES_MAX: u64 = 2_000_000;

/// One line per fsync: `<CLOCK_MONOTONIC ns> <path>`, written when the data is durable and
/// before the fsync returns. The fault tests' fsync audit reads it beside the history.
#[derive(Debug)]
pub struct SyncLog {
    file: File,
    lines: u64,
}

impl SyncLog {
    /// Appends to `path`.
    pub fn open(path: &Path) -> io::Result<SyncLog> {
        Ok(SyncLog { file: OpenOptions::new().create(true).append(true).open(path)?, lines: 0 })
    }

    fn note(&mut self, path: &Path) {
        use std::io::Write;
        if self.lines > SYNC_LOG_LINES_MAX {
            return;
        }
        self.lines += 1;
        let line = if self.lines > SYNC_LOG_LINES_MAX {
            "full: later fsyncs are not logged\n".to_string()
        } else {
            let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
            let ns = u128::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000
                + u128::try_from(now.tv_nsec).unwrap_or(0);
            format!("{ns} {}\n", path.display())
        };
        // A line lost to a failed write only weakens the audit; the fsync itself succeeded.
        let _ = self.file.write_all(line.as_bytes());
    }
}

/// The filesystem. `unsynced_max` bounds the memory of unsynced pages: past it the file
/// holding the most is written back, as a kernel's writeback may do at any time.
#[derive(Debug)]
pub struct LazyFs {
    backing: PathBuf,
    unsynced_max: u64,
    state: Mutex<State>,
    sync_log: Option<Mutex<SyncLog>>,
}

impl LazyFs {
    pub fn new(backing: PathBuf, unsynced_max: u64, sync_log: Option<SyncLog>) -> Self {
        let mut state = State { next_ino: INodeNo::ROOT.0, ..State::default() };
        state.intern(Path::new(""));
        LazyFs { backing, unsynced_max, state: Mutex::new(state), sync_log: sync_log.map(Mutex::new) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn real(&self, path: &Path) -> PathBuf {
        self.backing.join(path)
    }

    fn attr(&self, state: &State, ino: u64) -> Result<FileAttr, Errno> {
        let meta = fs::symlink_metadata(self.real(state.path(ino)?)).map_err(|e| errno(&e))?;
        let size = state.unsynced.get(&ino).map_or(meta.len(), Unsynced::size);
        let time = |secs: i64, nanos: i64| {
            let secs = u64::try_from(secs).unwrap_or(0);
            UNIX_EPOCH + Duration::new(secs, u32::try_from(nanos).unwrap_or(0))
        };
        let kind = if meta.is_dir() {
            FileType::Directory
        } else if meta.file_type().is_symlink() {
            FileType::Symlink
        } else {
            FileType::RegularFile
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: time(meta.atime(), meta.atime_nsec()),
            mtime: time(meta.mtime(), meta.mtime_nsec()),
            ctime: time(meta.ctime(), meta.ctime_nsec()),
            crtime: time(meta.mtime(), meta.mtime_nsec()),
            kind,
            perm: u16::try_from(meta.mode() & 0o7777).unwrap_or(0o644),
            nlink: u32::try_from(meta.nlink()).unwrap_or(1),
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: u32::try_from(meta.rdev()).unwrap_or(0),
            blksize: 4096,
            flags: 0,
        })
    }

    fn file(&self, state: &mut State, ino: u64) -> Result<Arc<File>, Errno> {
        if let Some(file) = state.files.get(&ino) {
            return Ok(file.clone());
        }
        let path = self.real(state.path(ino)?);
        let file = OpenOptions::new().read(true).write(true).open(&path).map_err(|e| errno(&e))?;
        let file = Arc::new(file);
        state.files.insert(ino, file.clone());
        Ok(file)
    }

    /// Makes `ino`'s unsynced data durable.
    fn write_back(&self, state: &mut State, ino: u64) -> Result<(), Errno> {
        let Some(unsynced) = state.unsynced.remove(&ino) else { return Ok(()) };
        let file = self.file(state, ino)?;
        let bytes = unsynced.write_back(&file).map_err(|e| errno(&e))?;
        state.unsynced_bytes -= bytes;
        Ok(())
    }

    fn set_size(&self, state: &mut State, ino: u64, size: u64) -> Result<(), Errno> {
        let file = self.file(state, ino)?;
        file.set_len(size).map_err(|e| errno(&e))?;
        if let Some(u) = state.unsynced.get_mut(&ino) {
            let dropped = u.truncate(size);
            state.unsynced_bytes -= dropped;
        }
        Ok(())
    }

    /// `unlink` and `rmdir`: removes `name` from the backing directory with `remove`, and
    /// forgets it (with whatever of it was unsynced).
    fn remove(
        &self,
        parent: INodeNo,
        name: &OsStr,
        remove: impl Fn(&Path) -> io::Result<()>,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        let path = match state.path(parent.0) {
            Ok(p) => p.join(name),
            Err(e) => return reply.error(e),
        };
        match remove(&self.real(&path)) {
            Ok(()) => {
                state.forget(&path);
                reply.ok();
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn entry(&self, state: &mut State, path: &Path, reply: ReplyEntry) {
        let ino = state.intern(path);
        match self.attr(state, ino) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => {
                state.forget(path);
                reply.error(e);
            }
        }
    }
}

impl Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut state = self.state();
        let path = match state.path(parent.0) {
            Ok(p) => p.join(name),
            Err(e) => return reply.error(e),
        };
        self.entry(&mut state, &path, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let state = self.state();
        match self.attr(&state, ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.state();
        let result = (|| {
            if let Some(size) = size {
                self.set_size(&mut state, ino.0, size)?;
            }
            if let Some(mode) = mode {
                let path = self.real(state.path(ino.0)?);
                fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(|e| errno(&e))?;
            }
            self.attr(&state, ino.0)
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let mut state = self.state();
        let path = match state.path(parent.0) {
            Ok(p) => p.join(name),
            Err(e) => return reply.error(e),
        };
        if let Err(e) = fs::DirBuilder::new().mode(mode & !umask).create(self.real(&path)) {
            return reply.error(errno(&e));
        }
        self.entry(&mut state, &path, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, |p| fs::remove_file(p), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, |p| fs::remove_dir(p), reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !flags.is_empty() {
            return reply.error(Errno::EINVAL);
        }
        let mut state = self.state();
        let (from, to) = match (state.path(parent.0), state.path(newparent.0)) {
            (Ok(a), Ok(b)) => (a.join(name), b.join(newname)),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        if let Err(e) = fs::rename(self.real(&from), self.real(&to)) {
            return reply.error(errno(&e));
        }
        state.forget(&to);
        // The moved inode, and everything under it when it is a directory, keeps its number.
        let moved: Vec<(u64, PathBuf)> = state
            .paths
            .iter()
            .filter_map(|(&ino, p)| {
                // `join("")` would add a trailing slash, and the path would name a directory.
                let rest = p.strip_prefix(&from).ok()?;
                Some((ino, if rest.as_os_str().is_empty() { to.clone() } else { to.join(rest) }))
            })
            .collect();
        for (ino, new_path) in moved {
            if let Some(old) = state.paths.insert(ino, new_path.clone()) {
                state.inodes.remove(&old);
            }
            state.inodes.insert(new_path, ino);
        }
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut state = self.state();
        let is_dir = state.path(ino.0).map(|p| self.real(p).is_dir());
        match is_dir {
            Ok(true) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Ok(false) => match self.file(&mut state, ino.0) {
                Ok(_) => reply.opened(FileHandle(ino.0), FopenFlags::empty()),
                Err(e) => reply.error(e),
            },
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = self.state();
        let path = match state.path(parent.0) {
            Ok(p) => p.join(name),
            Err(e) => return reply.error(e),
        };
        let mut options = OpenOptions::new();
        options.read(true).write(true).mode(mode & !umask);
        if flags & rustix::fs::OFlags::EXCL.bits().cast_signed() != 0 {
            options.create_new(true);
        } else {
            options.create(true);
        }
        let file = match options.open(self.real(&path)) {
            Ok(f) => f,
            Err(e) => return reply.error(errno(&e)),
        };
        state.forget(&path);
        let ino = state.intern(&path);
        state.files.insert(ino, Arc::new(file));
        if flags & rustix::fs::OFlags::TRUNC.bits().cast_signed() != 0
            && let Err(e) = self.set_size(&mut state, ino, 0)
        {
            return reply.error(e);
        }
        match self.attr(&state, ino) {
            Ok(attr) => reply.created(&TTL, &attr, Generation(0), FileHandle(ino), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut state = self.state();
        let file = match self.file(&mut state, ino.0) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        let unsynced = state.unsynced.entry(ino.0);
        let result = match unsynced {
            std::collections::hash_map::Entry::Occupied(u) => u.get().read(&file, offset, size),
            std::collections::hash_map::Entry::Vacant(_) => {
                file.metadata().and_then(|m| Unsynced::new(m.len()).read(&file, offset, size))
            }
        };
        match result {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut state = self.state();
        let result = (|| {
            let file = self.file(&mut state, ino.0)?;
            let unsynced = match state.unsynced.entry(ino.0) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(Unsynced::new(file.metadata().map_err(|e| errno(&e))?.len()))
                }
            };
            let added = unsynced.write(&file, offset, data).map_err(|e| errno(&e))?;
            state.unsynced_bytes += added;
            while state.unsynced_bytes > self.unsynced_max {
                let Some(biggest) = state.unsynced.iter().max_by_key(|(_, u)| u.bytes()).map(|(&i, _)| i)
                else {
                    break;
                };
                self.write_back(&mut state, biggest)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => reply.written(u32::try_from(data.len()).unwrap_or(u32::MAX)),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _owner: LockOwner, reply: ReplyEmpty) {
        // close() is not fsync(): nothing becomes durable here.
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let mut state = self.state();
        match self.write_back(&mut state, ino.0) {
            Ok(()) => {
                if let (Some(log), Ok(path)) = (&self.sync_log, state.path(ino.0)) {
                    log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).note(path);
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // Names are durable as soon as they change.
        reply.ok();
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let mut state = self.state();
        let dir = match state.path(ino.0) {
            Ok(p) => p.to_path_buf(),
            Err(e) => return reply.error(e),
        };
        let mut names = match fs::read_dir(self.real(&dir)) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| (e.file_name(), e.file_type().is_ok_and(|t| t.is_dir())))
                .collect::<Vec<_>>(),
            Err(e) => return reply.error(errno(&e)),
        };
        names.sort();
        let mut all =
            vec![(".".into(), ino.0, FileType::Directory), ("..".into(), ino.0, FileType::Directory)];
        for (name, is_dir) in names {
            let child = state.intern(&dir.join(&name));
            all.push((name, child, if is_dir { FileType::Directory } else { FileType::RegularFile }));
        }
        for (i, (name, child, kind)) in
            all.into_iter().enumerate().skip(usize::try_from(offset).unwrap_or(usize::MAX))
        {
            if reply.add(INodeNo(child), i as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match rustix::fs::statvfs(&self.backing) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                u32::try_from(s.f_bsize).unwrap_or(4096),
                u32::try_from(s.f_namemax).unwrap_or(255),
                u32::try_from(s.f_frsize).unwrap_or(4096),
            ),
            Err(e) => reply.error(Errno::from_i32(e.raw_os_error())),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        let result = match mode {
            // Preallocation without a size change: a hint this filesystem has no use for.
            FALLOC_FL_KEEP_SIZE => Ok(()),
            0 => match self.attr(&state, ino.0) {
                Ok(attr) if attr.size < offset + length => self.set_size(&mut state, ino.0, offset + length),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            },
            _ => Err(Errno::EOPNOTSUPP),
        };
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}
