//! What a signal must not leave behind: temporary files (which may hold the
//! server's keys), temporary directories and child processes.
//!
//! The first registration starts one thread that waits for SIGINT, SIGTERM
//! and SIGHUP. On a signal it kills the registered children, removes the
//! registered paths, and ends the process the way the signal's default
//! action would (so a shell sees 130 for Ctrl-C). Code that stops cleanly by
//! itself (writing a stick) asks for [`interrupt_flag`] instead: the signal
//! then only sets the flag, and that code unwinds and cleans up on its own.
//!
//! A SIGKILL runs no handler. [`PrivateTemp`] files therefore hold an
//! exclusive `flock` while they live, which the kernel drops when the
//! process dies: a later run sweeps the leftovers it can lock.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Temporary files mkstick makes next to its outputs: `.mkstick-XXXXXX.tmp`.
pub const TEMP_PREFIX: &str = ".mkstick-";
pub const TEMP_SUFFIX: &str = ".tmp";

const SIGNALS: [i32; 3] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
];

#[derive(Debug)]
enum Item {
    File(PathBuf),
    Dir(PathBuf),
    Child(u32),
}

struct State {
    items: Mutex<BTreeMap<u64, Item>>,
    next: AtomicU64,
    /// Set when some code handles interruption itself.
    graceful: Arc<AtomicBool>,
    interrupted: Arc<AtomicBool>,
}

static STATE: OnceLock<State> = OnceLock::new();

fn state() -> &'static State {
    STATE.get_or_init(|| {
        let s = State {
            items: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
            graceful: Arc::new(AtomicBool::new(false)),
            interrupted: Arc::new(AtomicBool::new(false)),
        };
        match signal_hook::iterator::Signals::new(SIGNALS) {
            Ok(mut signals) => {
                std::thread::spawn(move || {
                    for sig in signals.forever() {
                        on_signal(sig);
                    }
                });
            }
            // Without the handler a signal ends the process as it always
            // did; the next run sweeps what it left (see `sweep`).
            Err(e) => eprintln!("warning: cannot watch for Ctrl-C ({e}); an interrupted run may leave temporary files"),
        }
        s
    })
}

fn items() -> MutexGuard<'static, BTreeMap<u64, Item>> {
    // A panic while the lock was held leaves the map as it was: still usable.
    state().items.lock().unwrap_or_else(|e| e.into_inner())
}

fn on_signal(sig: i32) {
    let s = state();
    if s.graceful.load(Ordering::SeqCst) {
        s.interrupted.store(true, Ordering::SeqCst);
        return;
    }
    // Held until the process ends: no registration or persist runs after.
    let held = items();
    // The children first, so that none writes into a directory being
    // removed.
    for item in held.values() {
        if let Item::Child(pid) = item {
            let pid = nix::unistd::Pid::from_raw(*pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
    for item in held.values() {
        match item {
            Item::Child(_) => {}
            Item::File(p) => {
                let _ = std::fs::remove_file(p);
            }
            Item::Dir(p) => {
                let _ = std::fs::remove_dir_all(p);
            }
        }
    }
    let _ = signal_hook::low_level::emulate_default_handler(sig);
    // Reached only if the default action did not end the process.
    std::process::exit(128 + sig);
}

/// Removes its item from the list when dropped.
#[derive(Debug)]
pub struct Registered(u64);

impl Drop for Registered {
    fn drop(&mut self) {
        items().remove(&self.0);
    }
}

fn register(item: Item) -> Registered {
    let id = state().next.fetch_add(1, Ordering::SeqCst);
    items().insert(id, item);
    Registered(id)
}

/// Remove `path` (a file) if a signal ends the process.
pub fn remove_file_on_signal(path: &Path) -> Registered {
    register(Item::File(path.to_path_buf()))
}

/// Remove `path` (a directory, recursively) if a signal ends the process.
pub fn remove_dir_on_signal(path: &Path) -> Registered {
    register(Item::Dir(path.to_path_buf()))
}

/// Kill the child `pid` if a signal ends the process.
pub fn kill_child_on_signal(pid: u32) -> Registered {
    register(Item::Child(pid))
}

/// From now on, SIGINT, SIGTERM and SIGHUP set the returned flag instead of
/// ending the process: the caller checks it and stops cleanly.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let s = state();
    s.graceful.store(true, Ordering::SeqCst);
    Arc::clone(&s.interrupted)
}

/// A private (mode 0600) temporary file `.mkstick-XXXXXX.tmp` in a
/// directory, removed on drop, on a signal, and by the next run in that
/// directory after a SIGKILL.
pub struct PrivateTemp {
    // Field order: unregister after the file is gone.
    tmp: tempfile::NamedTempFile,
    _lock: nix::fcntl::Flock<File>,
    registered: Registered,
}

impl PrivateTemp {
    /// Sweep the leftovers of dead runs in `dir`, then make a new file.
    pub fn new_in(dir: &Path) -> Result<PrivateTemp> {
        use std::os::unix::fs::PermissionsExt;
        sweep(dir);
        // The handler is installed, and the list locked, before the file
        // exists: a signal in between waits for the registration and then
        // removes the file, instead of ending the process past it.
        let s = state();
        let mut held = items();
        let tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(TEMP_SUFFIX)
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        let id = s.next.fetch_add(1, Ordering::SeqCst);
        held.insert(id, Item::File(tmp.path().to_path_buf()));
        drop(held);
        let registered = Registered(id);
        let dup = tmp
            .as_file()
            .try_clone()
            .context("duplicating a temporary file descriptor")?;
        let lock = nix::fcntl::Flock::lock(dup, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| anyhow::anyhow!("locking {}: {e}", tmp.path().display()))?;
        Ok(PrivateTemp {
            tmp,
            _lock: lock,
            registered,
        })
    }

    pub fn file(&self) -> &File {
        self.tmp.as_file()
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Rename the file to `path`; replace an existing file only if
    /// `overwrite`. A signal sees the file either as a temporary one (and
    /// removes it) or as `path`, never half-way.
    pub fn persist(self, path: &Path, overwrite: bool) -> Result<()> {
        let PrivateTemp {
            tmp,
            _lock,
            registered,
        } = self;
        let mut held = items();
        let r = if overwrite {
            tmp.persist(path).map(|_| ()).map_err(|e| e.error)
        } else {
            tmp.persist_noclobber(path).map(|_| ()).map_err(|e| e.error)
        };
        // Unregister under the same lock, so that a signal never removes
        // a file of the same name made later.
        held.remove(&registered.0);
        drop(held);
        drop(registered);
        r.with_context(|| format!("saving {}", path.display()))
    }
}

/// Remove `.mkstick-*.tmp` files in `dir` that no live process holds: the
/// leftovers of a run that was killed. Returns how many were removed.
pub fn sweep(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)) {
            continue;
        }
        if !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = e.path();
        let Ok(f) = File::open(&path) else { continue };
        // A live run holds its lock; a dead one's lock died with it.
        if let Ok(lock) = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            if std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
            drop(lock);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_removes_unlocked_leftovers_and_keeps_live_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(".mkstick-abc123.tmp");
        std::fs::write(&dead, b"secret").unwrap();
        let other = dir.path().join(".mkstick-notours");
        std::fs::write(&other, b"x").unwrap();
        let live = PrivateTemp::new_in(dir.path()).unwrap();
        assert!(!dead.exists(), "new_in sweeps the dead run's file");
        assert!(other.exists(), "only .mkstick-*.tmp files are swept");
        assert_eq!(sweep(dir.path()), 0, "a live temp file is locked");
        assert!(live.path().exists());
        let path = live.path().to_path_buf();
        drop(live);
        assert!(!path.exists());
    }

    #[test]
    fn private_temp_is_mode_0600_and_persists_without_clobbering() {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.img");
        let t = PrivateTemp::new_in(dir.path()).unwrap();
        assert_eq!(
            t.file().metadata().unwrap().permissions().mode() & 0o777,
            0o600
        );
        t.file().write_all(b"one").unwrap();
        t.persist(&out, false).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"one");
        let t = PrivateTemp::new_in(dir.path()).unwrap();
        assert!(t.persist(&out, false).is_err());
        assert_eq!(std::fs::read(&out).unwrap(), b"one");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "the refused temp file is removed");
    }
}
