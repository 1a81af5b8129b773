//! Code the embedder wraps around a worker's life and around each blocking park.
//!
//! An embedding such as the Python layer needs its worker threads attached to the
//! interpreter for their whole life (attaching per task destroys the thread state a
//! parked greenlet needs) and detached only while they wait in the ring: `wrap_worker`
//! and `wrap_park` give it exactly those two places.

use std::fmt;
use std::sync::Arc;

/// The embedder's function: it gets the body to run and calls it once.
type WrapFn = dyn Fn(&mut dyn FnMut()) + Send + Sync;

/// Runs the closure it is given, with whatever set-up and tear-down it wants around it.
/// It must call the closure exactly once.
#[derive(Clone)]
pub struct Wrapper(Arc<WrapFn>);

impl Wrapper {
    pub fn new(f: impl Fn(&mut dyn FnMut()) + Send + Sync + 'static) -> Wrapper {
        Wrapper(Arc::new(f))
    }

    fn run<R>(&self, body: impl FnOnce() -> R) -> R {
        let mut body = Some(body);
        let mut result = None;
        (self.0)(&mut || {
            if let Some(body) = body.take() {
                result = Some(body());
            }
        });
        result.expect("a ringloom wrapper must call the closure it is given")
    }
}

impl fmt::Debug for Wrapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Wrapper")
    }
}

#[derive(Clone, Default, Debug)]
pub(crate) struct Hooks {
    pub(crate) worker: Option<Wrapper>,
    pub(crate) park: Option<Wrapper>,
}

impl Hooks {
    pub(crate) fn around_worker<R>(&self, body: impl FnOnce() -> R) -> R {
        match &self.worker {
            Some(wrapper) => wrapper.run(body),
            None => body(),
        }
    }

    pub(crate) fn around_park<R>(&self, body: impl FnOnce() -> R) -> R {
        match &self.park {
            Some(wrapper) => wrapper.run(body),
            None => body(),
        }
    }
}
