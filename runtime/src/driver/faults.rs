//! Fault injection (cargo feature `fault-injection`): the driver sees, on a schedule, the
//! errors a kernel under pressure returns, so that the paths handling them run in tests.
//!
//! Without the feature, [`Faults`] is empty and every check is a constant `None`.

#[cfg(feature = "fault-injection")]
pub use enabled::FaultPlan;
#[cfg(feature = "fault-injection")]
pub(crate) use enabled::Faults;

#[cfg(not(feature = "fault-injection"))]
pub(crate) use disabled::Faults;

#[cfg(not(feature = "fault-injection"))]
mod disabled {
    /// No faults: the build without `fault-injection`.
    #[derive(Clone, Debug)]
    pub(crate) struct Faults;

    impl Faults {
        pub(crate) fn new(_config: &crate::driver::DriverConfig) -> Faults {
            Faults
        }

        #[inline(always)]
        pub(crate) fn refuse_enter(&self) -> Option<i32> {
            None
        }

        // The same signature as with the feature, which names the op by its type.
        #[allow(clippy::extra_unused_type_parameters)]
        #[inline(always)]
        pub(crate) fn fail_op<T>(&self) -> Option<i32> {
            None
        }

        #[inline(always)]
        pub(crate) fn mark(&mut self, _user_data: u64, _errno: i32) {}

        #[inline(always)]
        pub(crate) fn take(&mut self, _user_data: u64) -> Option<i32> {
            None
        }
    }
}

#[cfg(feature = "fault-injection")]
mod enabled {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// Every `every`-th event of a kind fails with `errno`.
    #[derive(Debug)]
    struct Schedule {
        every: u64,
        errno: i32,
        seen: AtomicU64,
        injected: AtomicU64,
    }

    impl Schedule {
        fn new(every: u64, errno: i32) -> Schedule {
            assert!(every >= 1, "a fault schedule needs every >= 1");
            Schedule {
                every,
                errno,
                seen: AtomicU64::new(0),
                injected: AtomicU64::new(0),
            }
        }

        fn next(&self) -> Option<i32> {
            let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
            if n % self.every == 0 {
                self.injected.fetch_add(1, Ordering::Relaxed);
                Some(self.errno)
            } else {
                None
            }
        }
    }

    #[derive(Debug, Default)]
    struct Plan {
        enters: Option<Schedule>,
        ops: Vec<(&'static str, Schedule)>,
    }

    /// Which faults every driver of a runtime injects; shared by them, so the schedule
    /// counts across workers.
    ///
    /// ```ignore
    /// let plan = FaultPlan::new()
    ///     .refuse_enters(3, libc::EAGAIN) // every third ring enter is refused
    ///     .fail_ops("Read", 5, libc::ENOMEM); // every fifth read fails
    /// let rt = ringloom::Builder::default().inject_faults(plan.clone()).build()?;
    /// ```
    #[derive(Clone, Debug, Default)]
    pub struct FaultPlan {
        plan: Arc<Plan>,
    }

    impl FaultPlan {
        pub fn new() -> FaultPlan {
            FaultPlan::default()
        }

        /// Every `every`-th entry into the kernel fails with `errno` before reaching it:
        /// for io_uring, a submit or wait refused (`EAGAIN`, `EBUSY`, `EINTR`), taking
        /// nothing from the submission queue; for the fallback driver, an `epoll_wait`
        /// interrupted (`EINTR`, whatever `errno` says: it returns nothing else).
        pub fn refuse_enters(self, every: u64, errno: i32) -> FaultPlan {
            self.edit(|plan| plan.enters = Some(Schedule::new(every, errno)))
        }

        /// Every `every`-th op of type `op` (its name as in `ringloom::op`: "Read",
        /// "Recv", "Accept", ...) fails with `errno` instead of running, as if the kernel
        /// refused it: io_uring gets a NOP in its place, whose completion carries the
        /// error; the fallback driver completes it at once.
        pub fn fail_ops(self, op: &'static str, every: u64, errno: i32) -> FaultPlan {
            self.edit(|plan| plan.ops.push((op, Schedule::new(every, errno))))
        }

        /// Faults injected so far, of every kind.
        pub fn injected(&self) -> u64 {
            let ops = self.plan.ops.iter().map(|(_, s)| s);
            self.plan
                .enters
                .iter()
                .chain(ops)
                .map(|s| s.injected.load(Ordering::Relaxed))
                .sum()
        }

        fn edit(mut self, change: impl FnOnce(&mut Plan)) -> FaultPlan {
            let plan = Arc::get_mut(&mut self.plan)
                .expect("a FaultPlan is configured before it is given to a runtime");
            change(plan);
            self
        }
    }

    /// One driver's view of the plan, and the ops it failed that have not completed yet.
    #[derive(Clone, Debug)]
    pub(crate) struct Faults {
        plan: Option<FaultPlan>,
        failed: HashMap<u64, i32>,
    }

    impl Faults {
        pub(crate) fn new(config: &crate::driver::DriverConfig) -> Faults {
            Faults {
                plan: config.faults.clone(),
                failed: HashMap::new(),
            }
        }

        pub(crate) fn refuse_enter(&self) -> Option<i32> {
            self.plan.as_ref()?.plan.enters.as_ref()?.next()
        }

        pub(crate) fn fail_op<T>(&self) -> Option<i32> {
            let plan = self.plan.as_ref()?;
            let name = op_name::<T>();
            plan.plan
                .ops
                .iter()
                .find(|(op, _)| *op == name)
                .and_then(|(_, schedule)| schedule.next())
        }

        /// Remembers that the op `user_data` must complete with `-errno`.
        pub(crate) fn mark(&mut self, user_data: u64, errno: i32) {
            self.failed.insert(user_data, errno);
        }

        /// The error an op's completion must carry instead of its own, if it was failed.
        pub(crate) fn take(&mut self, user_data: u64) -> Option<i32> {
            if self.failed.is_empty() {
                return None;
            }
            self.failed.remove(&user_data)
        }
    }

    /// "ringloom::op::read::Read<alloc::vec::Vec<u8>>" → "Read".
    fn op_name<T>() -> &'static str {
        let full = std::any::type_name::<T>();
        let path = full.split('<').next().unwrap_or(full);
        path.rsplit("::").next().unwrap_or(path)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn op_names_are_the_type_names_without_path_or_parameters() {
            assert_eq!(op_name::<crate::op::Read<Vec<u8>>>(), "Read");
            assert_eq!(op_name::<crate::op::Nop>(), "Nop");
        }

        #[test]
        fn a_schedule_fails_every_nth_event() {
            let plan = FaultPlan::new().fail_ops("Nop", 3, libc::ENOMEM);
            let faults = Faults {
                plan: Some(plan.clone()),
                failed: HashMap::new(),
            };
            let got: Vec<_> = (0..7).map(|_| faults.fail_op::<crate::op::Nop>()).collect();
            let e = Some(libc::ENOMEM);
            assert_eq!(got, [None, None, e, None, None, e, None]);
            assert_eq!(faults.fail_op::<crate::op::Read<Vec<u8>>>(), None);
            assert_eq!(plan.injected(), 2);
        }
    }
}
