//! One long-lived OS thread per worker slot runs all of that slot's libtorch
//! compute. libtorch's CPU parallelism (OpenMP) builds a thread team per
//! calling thread; with compute hopping between `spawn_blocking` threads,
//! stale teams pile up and contend for the cores with each other and with
//! request handling (measured: ridge 5× slower in the API server's process).
//! A fixed thread keeps one team, reused job after job.
//!
//! `Cores` counts the slots' compute threads at work, so that a job whose
//! work splits into independent pieces can run some of them on a core no
//! other job is using (`Cores::share`), without crowding busy ones.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::jobs::JobError;

type Task = Box<dyn FnOnce() + Send>;

pub struct ComputeThread {
    tx: Mutex<mpsc::Sender<Task>>,
    cores: Arc<Cores>,
}

impl ComputeThread {
    pub fn spawn(name: &str, cores: Arc<Cores>) -> ComputeThread {
        let (tx, rx) = mpsc::channel::<Task>();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                for task in rx {
                    task();
                }
            })
            .expect("a compute thread");
        ComputeThread {
            tx: Mutex::new(tx),
            cores,
        }
    }

    /// The worker's cores, shared with its other slots.
    pub fn cores(&self) -> &Arc<Cores> {
        &self.cores
    }

    /// Runs `f` on the compute thread. A panic inside (an unchecked libtorch
    /// op) fails the job with its message rather than killing the worker.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, JobError> {
        let (otx, orx) = tokio::sync::oneshot::channel();
        let cores = self.cores.clone();
        let task: Task = Box::new(move || {
            let _busy = cores.enter();
            let _ = otx.send(catch_unwind(AssertUnwindSafe(f)));
        });
        self.tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(task)
            .map_err(|_| JobError::Retryable("the compute thread has stopped".into()))?;
        match orx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(panic)) => Err(crate::jobs::panic_error(panic)),
            Err(_) => Err(JobError::Retryable(
                "the compute thread dropped the task".into(),
            )),
        }
    }
}

/// libtorch's thread team at every core until dropped, then back to the
/// slot's count (also when the scope unwinds). Forward passes are few large
/// ops that a team runs well, unlike the metrics' many small ones.
pub struct EveryCore(i32);

impl EveryCore {
    pub fn for_this_scope() -> EveryCore {
        let metric_threads = tch::get_num_threads();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i32;
        tch::set_num_threads(cores.max(metric_threads));
        EveryCore(metric_threads)
    }
}

impl Drop for EveryCore {
    fn drop(&mut self) {
        tch::set_num_threads(self.0);
    }
}

/// The worker's cores and how many compute threads are at work on them.
pub struct Cores {
    count: usize,
    busy: AtomicUsize,
}

/// One compute thread at work, until dropped.
pub struct Busy<'a>(&'a Cores);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Cores {
    pub fn new(count: usize) -> Arc<Cores> {
        Arc::new(Cores {
            count: count.max(1),
            busy: AtomicUsize::new(0),
        })
    }

    /// This machine's cores.
    pub fn of_this_machine() -> Arc<Cores> {
        Cores::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    fn enter(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(self)
    }

    /// A core for one more thread, if the threads at work leave one free.
    /// Only while libtorch runs one thread per caller: a wider team already
    /// spreads each op over cores, and a short-lived helper thread would
    /// leave its OpenMP team behind (see the module comment).
    fn spare(&self) -> Option<Busy<'_>> {
        if tch::get_num_threads() > 1 {
            return None;
        }
        let mut busy = self.busy.load(Ordering::SeqCst);
        loop {
            if busy + 1 > self.count {
                return None;
            }
            match self
                .busy
                .compare_exchange(busy, busy + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Some(Busy(self)),
                Err(now) => busy = now,
            }
        }
    }

    /// `work` on every input, results in input order. The calling thread
    /// works through the inputs in order; a helper thread takes inputs too
    /// from the moment a core is spare (now, or when another job's compute
    /// ends) until none is left. Inputs are owned (libtorch tensors can be
    /// sent to another thread, not shared with it).
    pub fn share<I: Send, T: Send>(&self, inputs: Vec<I>, work: impl Fn(I) -> T + Sync) -> Vec<T> {
        let n = inputs.len();
        let inputs: Vec<Mutex<Option<I>>> =
            inputs.into_iter().map(|i| Mutex::new(Some(i))).collect();
        let outputs: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let take = || loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= n {
                return;
            }
            let input = inputs[i].lock().unwrap_or_else(|e| e.into_inner()).take();
            let out = work(input.expect("each input is taken once"));
            *outputs[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(out);
        };
        std::thread::scope(|scope| {
            if n > 1 && self.count > 1 {
                scope.spawn(|| {
                    while next.load(Ordering::SeqCst) < n {
                        if let Some(_busy) = self.spare() {
                            take();
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                });
            }
            take();
        });
        outputs
            .into_iter()
            .map(|o| {
                o.into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .expect("every input was worked on")
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_returns_every_result_in_input_order() {
        let cores = Cores::new(4);
        let out = cores.share((0..50).collect(), |i: u64| {
            std::thread::sleep(Duration::from_micros(200));
            i * i
        });
        assert_eq!(out, (0..50).map(|i| i * i).collect::<Vec<_>>());
    }

    #[test]
    fn no_helper_joins_while_every_core_is_busy() {
        let cores = Cores::new(2);
        let (_a, _b) = (cores.enter(), cores.enter());
        let caller = std::thread::current().id();
        let threads = cores.share((0..20).collect(), |_: u32| std::thread::current().id());
        assert!(
            threads.iter().all(|&t| t == caller),
            "a helper ran on a busy machine"
        );
    }

    #[test]
    fn a_helper_joins_when_a_core_is_spare() {
        tch::set_num_threads(1);
        let cores = Cores::new(2);
        let _caller_busy = cores.enter();
        let caller = std::thread::current().id();
        let threads = cores.share((0..40).collect(), |_: u32| {
            std::thread::sleep(Duration::from_millis(5));
            std::thread::current().id()
        });
        assert!(
            threads.iter().any(|&t| t != caller),
            "no helper took any input"
        );
    }
}
