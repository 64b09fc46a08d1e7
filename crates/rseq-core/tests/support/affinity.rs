//! Pinning for tests (shared with cpuslab's tests, which include this file).

/// Pins the calling thread to the first CPU it may run on (the same one for
/// every thread of the process) and returns that CPU.
pub fn pin_to_first_allowed_cpu() -> u32 {
    // SAFETY: plain affinity calls on this thread with zeroed sets.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set),
            0
        );
        let cpu = (0..1024).find(|&c| libc::CPU_ISSET(c, &set)).unwrap();
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of_val(&one), &one),
            0
        );
        cpu as u32
    }
}
