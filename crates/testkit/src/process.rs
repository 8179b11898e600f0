//! Child processes that cannot outlive their parent.

use std::os::unix::process::CommandExt;
use std::process::Command;

mod sys {
    use std::ffi::{c_int, c_ulong};
    extern "C" {
        pub fn prctl(option: c_int, ...) -> c_int;
    }
    pub const PR_SET_PDEATHSIG: c_int = 1;
    pub const SIGKILL: c_ulong = 9;
}

/// Makes the process `command` starts receive SIGKILL when the thread that spawned it ends (so
/// also when its parent is killed with `kill -9`): a broker or connector left behind by a crashed
/// test or tool would hold ports and data. Linux sends the signal when the spawning *thread*
/// ends, so spawn from a thread that lives as long as the child should.
pub fn bound_to_parent(command: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            sys::prctl(sys::PR_SET_PDEATHSIG, sys::SIGKILL);
            Ok(())
        })
    }
}
