//! One long-lived OS thread per worker slot runs all of that slot's libtorch
//! compute. libtorch's CPU parallelism (OpenMP) builds a thread team per
//! calling thread; with compute hopping between `spawn_blocking` threads,
//! stale teams pile up and contend for the cores with each other and with
//! request handling (measured: ridge 5× slower in the API server's process).
//! A fixed thread keeps one team, reused job after job.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Mutex;

use crate::jobs::JobError;

type Task = Box<dyn FnOnce() + Send>;

pub struct ComputeThread {
    tx: Mutex<mpsc::Sender<Task>>,
}

impl ComputeThread {
    pub fn spawn(name: &str) -> ComputeThread {
        let (tx, rx) = mpsc::channel::<Task>();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                for task in rx {
                    task();
                }
            })
            .expect("a compute thread");
        ComputeThread { tx: Mutex::new(tx) }
    }

    /// Runs `f` on the compute thread. A panic inside (an unchecked libtorch
    /// op) fails the job with its message rather than killing the worker.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, JobError> {
        let (otx, orx) = tokio::sync::oneshot::channel();
        let task: Task = Box::new(move || {
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
