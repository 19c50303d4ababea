//! The loader's thread priority: it must never take CPU from a query worker.

/// Puts the calling thread at the lowest scheduling priority: `SCHED_IDLE` on Linux (it runs
/// only when no normal thread wants the CPU, and any of them preempts it at once), else nice 19.
/// The loader and its compaction parse, validate and sort millions of names; on a server pinned
/// to one CPU that must never delay a query. Threads started from here inherit it.
pub(crate) fn lower_thread_priority() -> &'static str {
    use thread_priority::{
        set_thread_priority_and_policy, thread_native_id, thread_schedule_policy,
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
    };
    let thread = thread_native_id();
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        // The crate also resets the nice value (to 0, meaningless under SCHED_IDLE), which
        // may fail when it was higher: the policy is what counts.
        let _ = set_thread_priority_and_policy(thread, ThreadPriority::Min, idle);
        if thread_schedule_policy().is_ok_and(|policy| policy == idle) {
            return "SCHED_IDLE";
        }
    }
    let other = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);
    match set_thread_priority_and_policy(thread, ThreadPriority::Min, other) {
        Ok(()) => "nice 19",
        Err(error) => {
            tracing::warn!(
                "order loader: cannot lower its thread's priority ({error:?}); loads compete \
                 with the query workers for the CPU"
            );
            "normal"
        }
    }
}
