//! Threads that run protocol timers (VRRP adverts; vznetd's health probes use it
//! too) are scheduled ahead of everything else, as keepalived's `vrrp_rt_priority`
//! and `checker_rt_priority` do: a timer thread in the normal class waits tens of
//! milliseconds for its turn on a busy host, however nice, because the whole
//! process competes as one group with other work.

/// Puts the calling thread in the real-time round-robin class at the lowest
/// priority. Children it spawns (notify hooks, `command` checks) start in the normal
/// class again (SCHED_RESET_ON_FORK); the kernel's RT throttling (95 % of a period)
/// keeps a runaway thread from freezing the host. Without the privilege, nice -10.
pub fn raise_priority(what: &str) {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: plain integers and a pointer to a live sched_param; pid 0 is the
    // calling thread.
    let rt =
        unsafe { libc::sched_setscheduler(0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param) };
    if rt == 0 {
        return;
    }
    let why = std::io::Error::last_os_error();
    // SAFETY: PRIO_PROCESS with a thread id sets that thread's nice value.
    let nice = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, -10) };
    tracing::debug!(thread = what, error = %why, niced = nice == 0, "timer thread stays in the normal scheduling class");
}
