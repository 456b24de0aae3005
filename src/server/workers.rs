//! The runtime shape: `server.workers` threads, each running its own single-threaded tokio
//! runtime that accepts from the one listening socket and serves what it accepted, start to
//! end, on that thread (nginx's worker model).
//!
//! Why not tokio's work-stealing runtime: measured on the 2-core bench machine with the load
//! generator and the mock upstream beside the gateway (issue 13), one current-thread
//! runtime served ~30k non-stream requests/s at c=16 where the multi-thread runtime with
//! two workers served ~22k and with one worker ~27k: no cross-thread wake-ups, no stealing,
//! warm caches. More cores add more workers, each independent of the others.
//!
//! Shared: the listening socket (each worker polls its own handle of it; the kernel gives
//! each connection to one of them), the connection limit, the live state (config, health,
//! metrics, the pooled upstream client). Thread 0 is the caller's: it also runs the
//! background tasks (reload on SIGHUP, shared-state upkeep) and the signal handling that
//! tells every worker to drain.

use std::sync::Arc;

use tokio::sync::{watch, Semaphore};

use super::live::Live;

/// Workers when `server.workers` is 0: half the cores (at least one), since a gateway shares
/// its machine with its clients and often with its upstream (Ollama, a local mock).
pub fn auto_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).max(1)
}

/// A current-thread runtime with timers and I/O.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// What the workers share besides the state: the stop signal, and how many are still at
/// work.
///
/// A pooled upstream connection is driven by a task on the runtime of the worker that
/// opened it, and any worker may be using it: so no worker drops its runtime until every
/// worker has drained (`serve` waits for the others).
#[derive(Clone)]
pub struct Team {
    stop: Arc<watch::Sender<bool>>,
    working: Arc<watch::Sender<usize>>,
}

impl Team {
    pub fn new(workers: usize) -> Team {
        Team {
            stop: Arc::new(watch::channel(false).0),
            working: Arc::new(watch::channel(workers).0),
        }
    }

    /// Every worker stops accepting and drains what it has.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Serves `listener` as one worker until the team stops, then waits for the others.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        live: Arc<Live>,
        slots: Arc<Semaphore>,
    ) -> std::io::Result<()> {
        let team = self.clone();
        let served =
            super::serve_worker(listener, live, slots, async move { team.stopped().await }).await;
        self.working.send_modify(|n| *n = n.saturating_sub(1));
        let mut rx = self.working.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
        served
    }

    /// Start-up failed: every worker stops and nobody waits for the ones that never ran.
    pub fn abandon(&self) {
        self.stop();
        self.working.send_replace(0);
    }

    /// A worker that could not start: it counts as done.
    fn gave_up(&self) {
        self.working.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Starts workers 1..`workers` on their own threads, each serving `listener` (its own handle
/// of it) until the team stops; returns their handles. Worker 0 is the caller's to run.
pub fn spawn_workers(
    workers: usize,
    listener: &std::net::TcpListener,
    live: &Arc<Live>,
    slots: &Arc<Semaphore>,
    team: &Team,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut handles = Vec::with_capacity(workers.saturating_sub(1));
    for n in 1..workers {
        let listener = listener.try_clone()?;
        let (live, slots, team) = (live.clone(), slots.clone(), team.clone());
        let handle = std::thread::Builder::new()
            .name(format!("aisbf-worker-{n}"))
            .spawn(move || {
                let rt = match runtime() {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("worker {n}: cannot start its runtime: {e}");
                        team.gave_up();
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("worker {n}: cannot use the listener: {e}");
                            team.gave_up();
                            return;
                        }
                    };
                    if let Err(e) = team.serve(listener, live, slots).await {
                        tracing::error!("worker {n}: server error: {e}");
                    }
                });
            })?;
        handles.push(handle);
    }
    Ok(handles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_uses_half_the_cores_and_at_least_one() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(auto_workers(), (cores / 2).max(1));
        assert!(auto_workers() >= 1);
    }

    #[tokio::test]
    async fn stop_wakes_every_member() {
        let team = Team::new(3);
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let t = team.clone();
                tokio::spawn(async move { t.stopped().await })
            })
            .collect();
        team.stop();
        for w in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(5), w)
                .await
                .expect("woken")
                .unwrap();
        }
    }
}
