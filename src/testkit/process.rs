//! Child processes that the tests and benchmarks start (brokers, replicas, S3 servers, browser
//! drivers) end with the thread that started them, so no run leaves one behind: not a broker
//! kept in a static that is never dropped, not a test binary ended by Ctrl-C or SIGKILL.

use std::process::Command;

/// Makes the child that `command` spawns receive SIGKILL when the thread that spawns it ends
/// (on Linux, `PR_SET_PDEATHSIG`; elsewhere it does nothing). Spawn from a thread that
/// outlives the child: the test's own thread, a runtime worker, or a thread of its own, never
/// a blocking-pool thread, which ends after ten idle seconds and takes the child with it.
pub fn die_with_parent(command: &mut Command) -> &mut Command {
    imp::die_with_parent(command)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    #[allow(unsafe_code)]
    pub(super) fn die_with_parent(command: &mut Command) -> &mut Command {
        let parent = std::process::id();
        // SAFETY: between fork and exec the closure makes only async-signal-safe system calls
        // (prctl, getppid) and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have ended before prctl: then no signal is coming.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            })
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::process::Command;

    pub(super) fn die_with_parent(command: &mut Command) -> &mut Command {
        command
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn the_child_is_killed_when_its_thread_ends() {
        let child = std::thread::spawn(|| {
            die_with_parent(&mut Command::new("sleep"))
                .arg("60")
                .spawn()
                .expect("sleep starts")
        })
        .join()
        .expect("the spawning thread");
        let mut child = child;
        let status = child.wait().expect("reaped");
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    }

    #[test]
    fn the_child_lives_while_its_thread_does() {
        let mut child = die_with_parent(&mut Command::new("sleep"))
            .arg("60")
            .spawn()
            .expect("sleep starts");
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(child.try_wait().expect("status").is_none(), "still running");
        child.kill().expect("killed");
        child.wait().expect("reaped");
    }
}
