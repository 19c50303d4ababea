//! Child processes that cannot outlive the test binary.
//!
//! Every child (NSD, juris) is spawned by one long-lived thread and asks the kernel for
//! `SIGTERM` when that thread dies (`PR_SET_PDEATHSIG`). The death signal follows the
//! *thread* that forked, not the process: spawning from the test's own thread would kill
//! a shared server as soon as the first test using it returns. The spawner thread lives
//! as long as the process, so a crashed or killed test binary leaves no server behind.
//!
//! Each child also leads its own process group, so that [`signal_group`] reaches NSD's
//! helper processes (xfrd, server, dnstap collector) too.

use std::io;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;

type Request = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `command` in its own process group with `SIGTERM` as its parent-death signal.
pub fn spawn(mut command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Request>();
        thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut command, reply) in receiver {
                    // A test that gave up waiting has dropped its receiver: nothing to do.
                    let _ = reply.send(command.spawn());
                }
            })
            .unwrap_or_else(|error| panic!("cannot start the spawner thread: {error}"));
        Mutex::new(sender)
    });
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    set_parent_death_signal(&mut command);
    let (reply, result) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .send((command, reply))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    result
        .recv()
        .map_err(|_| io::Error::other("the spawner thread dropped the request"))?
}

/// Spawns `program -d -c config` (NSD and Unbound: stay in the foreground, read this
/// configuration), with stdin and stdout closed and stderr to `stderr`.
pub fn spawn_foreground(
    program: &std::path::Path,
    config: &std::path::Path,
    stderr: std::process::Stdio,
) -> io::Result<Child> {
    let mut command = Command::new(program);
    command
        .arg("-d")
        .arg("-c")
        .arg(config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr);
    spawn(command)
}

/// Sends `signal` (e.g. `libc::SIGTERM`) to every process in the group led by `child`.
///
/// Only call this while `child` has not been waited for: its pid (and so the group id)
/// cannot be reused before that.
pub fn signal_group(child: &Child, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    kill(-pid, signal);
}

/// Sends `signal` to `child` alone (not its group), e.g. SIGHUP to a server's main process.
/// Same precondition as [`signal_group`].
pub fn signal(child: &Child, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        kill(pid, signal);
    }
}

/// SIGTERM to `child`'s group, waits up to `timeout` for the exit, then SIGKILL; the
/// exit status if it could be collected.
pub fn terminate(mut child: Child, timeout: std::time::Duration, what: &str) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    signal_group(&child, libc::SIGTERM);
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    eprintln!("{what} did not exit within {timeout:?} of SIGTERM: killing it");
    signal_group(&child, libc::SIGKILL);
    child.wait().ok()
}

#[allow(
    unsafe_code,
    reason = "kill(2) has no safe wrapper in std; this is the crate's only other unsafe call"
)]
fn kill(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; the caller
    // guarantees the pid belongs to a child we have not reaped.
    unsafe {
        libc::kill(pid, signal);
    }
}

#[allow(
    unsafe_code,
    reason = "pre_exec is unsafe by signature; the closure is async-signal-safe (see SAFETY)"
)]
fn set_parent_death_signal(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec. It only calls prctl(2)
    // and getppid(2), both async-signal-safe, allocates nothing and touches no lock.
    // If the parent already died before prctl took effect, the child's parent is no
    // longer the spawner process: fail the spawn instead of leaving an orphan.
    let parent = std::process::id();
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(io::Error::last_os_error());
            }
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}
