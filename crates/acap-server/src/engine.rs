//! The engine thread: owns the [`BatchEngine`], takes jobs from a bounded queue, steps all
//! active requests together and streams each request's events back to its handler. A handler
//! that goes away (client disconnected) cancels its request and frees the slot.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use acap::{
    BatchEngine, CapPlan, GenerateParams, GenerationStats, LayerStats, SlotEvent, SlotInfo, Token,
};
use tokio::sync::mpsc;

/// What a request receives from the engine.
#[derive(Debug)]
pub enum Msg {
    /// A piece of generated text.
    Text(String),
    /// The request finished: statistics, the capping telemetry of its rows, and its slot.
    Done(GenerationStats, Vec<(u32, LayerStats)>, usize),
    /// The request failed.
    Failed(String),
}

/// A request for the engine.
pub struct Job {
    /// Prompt tokens.
    pub prompt: Vec<Token>,
    /// Generation settings.
    pub params: GenerateParams,
    /// Capping of this request's rows (`None`: uncapped).
    pub plan: Option<CapPlan>,
    /// Whether the engine's H-neuron suppression applies to this request's rows.
    pub h_suppress: bool,
    /// Where its events go.
    pub tx: mpsc::UnboundedSender<Msg>,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    /// Requests accepted, by endpoint.
    pub requests: Mutex<BTreeMap<&'static str, u64>>,
    /// Requests refused because the queue was full.
    pub rejected: AtomicU64,
    /// Prompt tokens processed (not counting cache reuse).
    pub prompt_tokens: AtomicU64,
    /// Tokens generated.
    pub generated_tokens: AtomicU64,
    /// Microseconds spent generating (summed over requests).
    pub generation_us: AtomicU64,
    /// Microseconds spent decoding prompts (summed over requests).
    pub prompt_us: AtomicU64,
    /// Requests waiting for a slot.
    pub queued: AtomicUsize,
    /// Requests running.
    pub active: AtomicUsize,
    /// Rows seen and capped per block, over all requests.
    pub capped_rows: Mutex<BTreeMap<u32, (u64, u64)>>,
    /// Each slot's state after the last step (`/slots`).
    pub slots: Mutex<Vec<SlotInfo>>,
    /// Tokens in all slots' KV caches after the last step (prefixes idle slots keep included).
    pub kv_tokens: AtomicUsize,
    /// Tokens in the KV caches of slots running a request: what a router should read as
    /// "KV cache in use" (an idle slot's kept prefix is given up whenever a request needs it).
    pub kv_tokens_running: AtomicUsize,
}

impl Metrics {
    fn snapshot(&self, engine: &BatchEngine) {
        let infos: Vec<SlotInfo> = (0..engine.n_slots()).map(|i| engine.slot_info(i)).collect();
        self.kv_tokens.store(
            infos.iter().map(|i| i.cached_tokens).sum(),
            Ordering::Relaxed,
        );
        self.kv_tokens_running.store(
            infos
                .iter()
                .filter(|i| i.busy)
                .map(|i| i.cached_tokens)
                .sum(),
            Ordering::Relaxed,
        );
        *self.slots.lock().unwrap_or_else(|e| e.into_inner()) = infos;
    }
}

/// The handle handlers use to submit jobs.
#[derive(Clone)]
pub struct EngineHandle {
    tx: std::sync::mpsc::Sender<Job>,
    queue_limit: usize,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

impl EngineHandle {
    /// Queues a job; `Err` when the queue is full or the engine has stopped.
    pub fn submit(&self, job: Job) -> Result<(), &'static str> {
        let m = &self.metrics;
        if m.queued.fetch_add(1, Ordering::SeqCst) >= self.queue_limit {
            m.queued.fetch_sub(1, Ordering::SeqCst);
            m.rejected.fetch_add(1, Ordering::Relaxed);
            return Err("the server is busy: the request queue is full, retry later");
        }
        self.tx.send(job).map_err(|_| {
            m.queued.fetch_sub(1, Ordering::SeqCst);
            "the server is shutting down"
        })
    }
}

/// Starts the engine thread. It ends when every [`EngineHandle`] is dropped and the running
/// requests are done.
pub fn spawn(
    mut engine: BatchEngine,
    queue_limit: usize,
) -> (EngineHandle, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let metrics = Arc::new(Metrics::default());
    metrics.snapshot(&engine);
    let m = metrics.clone();
    let thread = std::thread::spawn(move || {
        let mut waiting: VecDeque<Job> = VecDeque::new();
        let mut owners: Vec<Option<mpsc::UnboundedSender<Msg>>> = vec![None; engine.n_slots()];
        let mut open = true;
        loop {
            if !engine.is_busy() && waiting.is_empty() {
                if !open {
                    break;
                }
                match rx.recv() {
                    Ok(j) => waiting.push_back(j),
                    Err(_) => break,
                }
            }
            loop {
                match rx.try_recv() {
                    Ok(j) => waiting.push_back(j),
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            while let Some(slot) = waiting
                .front()
                .and_then(|j| engine.free_slot(&j.prompt, j.plan.as_ref(), j.h_suppress))
            {
                let job = waiting.pop_front().expect("front exists");
                m.queued.fetch_sub(1, Ordering::SeqCst);
                if job.tx.is_closed() {
                    continue; // the client left while queued
                }
                match engine.start(slot, &job.prompt, &job.params, job.plan, job.h_suppress) {
                    Ok(()) => owners[slot] = Some(job.tx),
                    Err(e) => {
                        let _ = job.tx.send(Msg::Failed(e.to_string()));
                    }
                }
            }
            for (slot, owner) in owners.iter().enumerate() {
                if owner.as_ref().is_some_and(mpsc::UnboundedSender::is_closed) {
                    engine.cancel(slot);
                }
            }
            m.active.store(engine.active(), Ordering::Relaxed);
            let events = engine.step();
            // Before anyone hears of a finished request, `/slots` shows its slot free.
            m.snapshot(&engine);
            for (slot, ev) in events {
                let msg = match ev {
                    SlotEvent::Text(t) => Msg::Text(t),
                    SlotEvent::Finished(st) => {
                        let telemetry = engine.slot_cap_stats(slot);
                        record(&m, &st, &telemetry);
                        Msg::Done(st, telemetry, slot)
                    }
                    SlotEvent::Failed(e) => Msg::Failed(e),
                };
                let last = !matches!(msg, Msg::Text(_));
                if let Some(tx) = &owners[slot] {
                    let _ = tx.send(msg);
                }
                if last {
                    owners[slot] = None;
                }
            }
            m.active.store(engine.active(), Ordering::Relaxed);
        }
    });
    (
        EngineHandle {
            tx,
            queue_limit,
            metrics,
        },
        thread,
    )
}

fn record(m: &Metrics, st: &GenerationStats, telemetry: &[(u32, LayerStats)]) {
    m.prompt_tokens.fetch_add(
        (st.prompt_tokens - st.cached_tokens) as u64,
        Ordering::Relaxed,
    );
    m.generated_tokens
        .fetch_add(st.generated_tokens as u64, Ordering::Relaxed);
    m.generation_us
        .fetch_add(st.generation_time.as_micros() as u64, Ordering::Relaxed);
    m.prompt_us
        .fetch_add(st.prompt_time.as_micros() as u64, Ordering::Relaxed);
    let mut rows = m.capped_rows.lock().unwrap_or_else(|e| e.into_inner());
    for (l, s) in telemetry {
        let e = rows.entry(*l).or_default();
        e.0 += s.rows_seen;
        e.1 += s.rows_capped;
    }
}
