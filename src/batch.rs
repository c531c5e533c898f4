//! Continuous batching: several requests share one llama context (one sequence each), every
//! decode step batches the pending tokens of all active requests, and the capping callback
//! applies each row's own request settings, so capped and uncapped requests share a batch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cap::{
    CapPlan, ControlVector, ControlVectorError, HSuppress, HSuppressError, LayerStats,
    SuppressStats,
};
use crate::error::{DecodeError, SessionError};
use crate::generation::Generation;
use crate::llama::Context;
use crate::model::{Model, Token};
use crate::session::{
    CanonicalPrefix, GenerateParams, GenerationStats, SessionParams, StopReason, common_prefix,
};

/// What a slot reports after a step.
#[derive(Debug, Clone, PartialEq)]
pub enum SlotEvent {
    /// Generated text (complete UTF-8, never the start of a stop string).
    Text(String),
    /// The request is finished; the slot is free again (its cache is kept for prefix reuse).
    Finished(GenerationStats),
    /// The request failed; the slot is free again.
    Failed(String),
}

/// A slot's state, as llama-server's `/slots` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotInfo {
    /// A request is running in it.
    pub busy: bool,
    /// Tokens in its KV cache (the running or last request's prompt and reply).
    pub cached_tokens: usize,
    /// The running or last request was capped.
    pub capped: bool,
}

struct Job {
    pending: Vec<Token>,
    prompt_len: usize,
    cached_tokens: usize,
    generation: Generation,
    next: Option<Token>,
    /// The tokens of this request in the batch being decoded.
    in_flight: Vec<Token>,
    cancelled: bool,
    started: Instant,
    prompt_time: Option<Duration>,
}

#[derive(Default)]
struct Slot {
    cached: Vec<Token>,
    /// The capping the cached keys and values were computed under: a prefix is only reused
    /// by a request with the same plan.
    cached_plan: Option<CapPlan>,
    /// Whether H-neuron suppression was on for the cached keys and values.
    cached_suppressed: bool,
    /// What deterministic mode may reuse of `cached`.
    canonical: CanonicalPrefix,
    job: Option<Job>,
}

impl Slot {
    fn new(canonical: CanonicalPrefix) -> Self {
        Self {
            cached: Vec::new(),
            cached_plan: None,
            cached_suppressed: false,
            canonical,
            job: None,
        }
    }

    /// Tokens of `prompt` whose cached keys and values may be reused.
    fn reusable(&self, prompt: &[Token], plan: Option<&CapPlan>, suppressed: bool) -> usize {
        if self.cached_plan.as_ref() == plan && self.cached_suppressed == suppressed {
            self.canonical.reusable(common_prefix(&self.cached, prompt))
        } else {
            0
        }
    }

    /// Cuts the cached-token list (and what deterministic mode may reuse of it) to `n`.
    fn forget_from(&mut self, n: usize) {
        self.cached.truncate(n);
        self.canonical.truncate(n);
    }
}

/// Several requests over one model and one context.
pub struct BatchEngine {
    ctx: Context,
    slots: Vec<Slot>,
    n_ctx_slot: usize,
    /// In deterministic mode, the slot whose turn it is to decode.
    turn: usize,
}

impl BatchEngine {
    /// An engine with `n_slots` slots; `params.n_ctx` is shared equally between them (as
    /// llama-server's `-c` and `-np`). Flash attention is off so a request's text never
    /// depends on which other requests share its batches.
    ///
    /// With [`SessionParams::deterministic`], each decode call holds one request's tokens
    /// (its prompt as whole physical batches from position 0, then one token per call), each
    /// slot has a cache stream of its own, and a cached prefix is reused only where it was
    /// computed the same way: a request's output is then bit-identical to the same request
    /// sent alone to a fresh engine, whatever ran before or beside it.
    ///
    /// # Errors
    /// As [`crate::Session::new`].
    pub fn new(model: &Model, n_slots: u32, params: SessionParams) -> Result<Self, SessionError> {
        let n_slots = n_slots.max(1);
        let mut params = SessionParams {
            n_seq_max: n_slots,
            flash_attention: Some(false),
            capping: None,
            ..params
        };
        // One physical batch per step, so rows map to requests directly.
        params.n_ubatch = params.n_batch;
        let mut ctx = Context::new(model, &params, n_slots)?;
        // Learn the graph's hook points now, while no request holds a sequence.
        ctx.probe();
        // Sequences get separate cache ranges of n_ctx / n_slots cells each.
        let n_ctx_slot = ctx.n_ctx() as usize / n_slots as usize;
        let h_suppress = params.h_suppress.take();
        let canonical = CanonicalPrefix::new(params.deterministic, ctx.n_ubatch());
        let mut engine = Self {
            ctx,
            slots: (0..n_slots).map(|_| Slot::new(canonical)).collect(),
            n_ctx_slot,
            turn: 0,
        };
        if h_suppress.is_some() {
            engine.set_h_suppress(h_suppress)?;
        }
        Ok(engine)
    }

    /// Applies control vectors to every request (or removes them with `None`); empties the
    /// cache. Call while no request runs.
    ///
    /// # Errors
    /// See [`ControlVectorError`].
    pub fn set_control_vector(
        &mut self,
        cv: Option<&ControlVector>,
    ) -> Result<(), ControlVectorError> {
        self.ctx.set_control_vector(cv)?;
        self.slots.iter_mut().for_each(|s| s.forget_from(0));
        Ok(())
    }

    /// The model.
    pub fn model(&self) -> &Model {
        self.ctx.model()
    }

    /// Number of slots.
    pub fn n_slots(&self) -> usize {
        self.slots.len()
    }

    /// Context tokens available to each request.
    pub fn n_ctx_per_slot(&self) -> usize {
        self.n_ctx_slot
    }

    /// A free slot, preferring one whose cache shares the longest prefix with `prompt` under
    /// the same capping `plan` and H-neuron suppression switch.
    pub fn free_slot(
        &self,
        prompt: &[Token],
        plan: Option<&CapPlan>,
        h_suppress: bool,
    ) -> Option<usize> {
        let suppressed = h_suppress && self.h_suppress().is_some();
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.job.is_none())
            .max_by_key(|(i, s)| (s.reusable(prompt, plan, suppressed), usize::MAX - i))
            .map(|(i, _)| i)
    }

    /// Sets (or removes, with `None`) the H-neuron suppression requests run under unless they
    /// switch it off; empties the cache. Call while no request runs.
    ///
    /// # Errors
    /// See [`HSuppressError`]: the file does not fit this model; nothing changes then.
    pub fn set_h_suppress(&mut self, h: Option<Arc<HSuppress>>) -> Result<(), HSuppressError> {
        if let Some(h) = &h {
            self.ctx.check_suppress(h)?;
        }
        for s in 0..self.slots.len() {
            let slot = self.ctx.cap_slot_mut(s);
            slot.suppress.clone_from(&h);
            slot.suppress_rows.iter_mut().for_each(|r| *r = 0);
        }
        for (s, slot) in self.slots.iter_mut().enumerate() {
            slot.forget_from(0);
            self.ctx.seq_rm(s, 0, None);
        }
        Ok(())
    }

    /// The H-neuron suppression file requests run under, if any.
    pub fn h_suppress(&self) -> Option<&HSuppress> {
        self.ctx.cap_slot(0).suppress.as_deref()
    }

    /// H-neuron suppression telemetry of the request in (or last run by) `slot`.
    pub fn slot_suppress_stats(&self, slot: usize) -> Vec<SuppressStats> {
        if slot >= self.slots.len() {
            return Vec::new();
        }
        self.ctx.cap_slot(slot).suppress_stats()
    }

    /// What `slot` is doing (llama-server's `/slots`).
    ///
    /// # Panics
    /// When `slot` is not below [`Self::n_slots`].
    pub fn slot_info(&self, slot: usize) -> SlotInfo {
        let s = &self.slots[slot];
        SlotInfo {
            busy: s.job.is_some(),
            cached_tokens: s.cached.len(),
            capped: s.cached_plan.is_some(),
        }
    }

    /// Whether the engine runs in deterministic mode (see [`Self::new`]).
    pub fn is_deterministic(&self) -> bool {
        self.slots.first().is_some_and(|s| s.canonical.is_on())
    }

    /// Whether any request is running.
    pub fn is_busy(&self) -> bool {
        self.slots.iter().any(|s| s.job.is_some())
    }

    /// Requests running.
    pub fn active(&self) -> usize {
        self.slots.iter().filter(|s| s.job.is_some()).count()
    }

    /// Starts a request in a free `slot`, capped by `plan` (`None`: uncapped), with the
    /// engine's H-neuron suppression when `h_suppress` (and a file is set). The slot's cache
    /// is reused for the longest common prefix computed under the same edits.
    ///
    /// # Errors
    /// A slot that is not free, an empty or too long prompt, bad sampling settings, or a plan
    /// this model's graph cannot apply ([`crate::CapError::NoHookPoint`]).
    pub fn start(
        &mut self,
        slot: usize,
        prompt: &[Token],
        params: &GenerateParams,
        plan: Option<CapPlan>,
        h_suppress: bool,
    ) -> Result<(), crate::Error> {
        let n_ctx = self.n_ctx_slot;
        if self.slots.get(slot).is_none_or(|s| s.job.is_some()) {
            return Err(DecodeError::Batch {
                reason: format!("slot {slot} is not free"),
            }
            .into());
        }
        if prompt.is_empty() {
            return Err(DecodeError::EmptyPrompt.into());
        }
        if prompt.len() > n_ctx {
            return Err(DecodeError::ContextFull {
                needed: prompt.len(),
                n_ctx: n_ctx as u32,
            }
            .into());
        }
        if let Some(plan) = &plan {
            self.ctx.check_plan(plan)?;
        }
        let generation = Generation::new(self.ctx.model(), params, n_ctx as u32, prompt)?;
        let suppressed = h_suppress && self.h_suppress().is_some();
        let s = &mut self.slots[slot];
        // Keys and values computed under other capping or suppression are never reused.
        let common = s
            .reusable(prompt, plan.as_ref(), suppressed)
            .min(prompt.len() - 1);
        s.forget_from(common);
        s.cached_plan.clone_from(&plan);
        s.cached_suppressed = suppressed;
        s.job = Some(Job {
            pending: prompt[common..].to_vec(),
            prompt_len: prompt.len(),
            cached_tokens: common,
            generation,
            next: None,
            in_flight: Vec::new(),
            cancelled: false,
            started: Instant::now(),
            prompt_time: None,
        });
        self.ctx.seq_rm(slot, common, None);
        let cap = self.ctx.cap_slot_mut(slot);
        cap.reset_stats();
        cap.plan = plan;
        cap.suppress_enabled = h_suppress;
        Ok(())
    }

    /// Stops the request in `slot` at the next step (it finishes as cancelled).
    pub fn cancel(&mut self, slot: usize) {
        if let Some(job) = self.slots.get_mut(slot).and_then(|s| s.job.as_mut()) {
            job.cancelled = true;
        }
    }

    /// Capping telemetry of the request in (or last run by) `slot`: `(block, stats)` for the
    /// blocks its plan caps.
    pub fn slot_cap_stats(&self, slot: usize) -> Vec<(u32, LayerStats)> {
        if slot >= self.slots.len() {
            return Vec::new();
        }
        self.ctx.cap_slot(slot).capped_stats()
    }

    /// One decode over the pending tokens of every active request; returns what each slot
    /// produced.
    pub fn step(&mut self) -> Vec<(usize, SlotEvent)> {
        let mut events = Vec::new();
        // Cancelled requests end before decoding anything more.
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.job.as_ref().is_some_and(|j| j.cancelled) {
                finish(slot, i, StopReason::Cancelled, &mut events);
            }
        }
        let included = self.fill_batch();
        if included.is_empty() {
            return events;
        }
        if let Err(e) = self.ctx.decode() {
            let why = e.to_string();
            for (i, _) in included {
                let slot = &mut self.slots[i];
                slot.job = None;
                slot.forget_from(0);
                self.ctx.seq_rm(i, 0, None);
                events.push((i, SlotEvent::Failed(why.clone())));
            }
            return events;
        }
        let n_ctx = self.n_ctx_slot;
        for (i, out_row) in included {
            let slot = &mut self.slots[i];
            let Some(job) = slot.job.as_mut() else {
                continue;
            };
            slot.canonical
                .decoded_prompt(slot.cached.len(), job.in_flight.len());
            slot.cached.extend_from_slice(&job.in_flight);
            let Some(row) = out_row else {
                continue; // more prompt to decode
            };
            if job.prompt_time.is_none() {
                job.prompt_time = Some(job.started.elapsed());
            }
            if job.cancelled {
                finish(slot, i, StopReason::Cancelled, &mut events);
                continue;
            }
            match job
                .generation
                .step(&self.ctx, row, slot.cached.len(), n_ctx)
            {
                Err(e) => {
                    slot.job = None;
                    events.push((i, SlotEvent::Failed(e.to_string())));
                }
                Ok(step) => {
                    if !step.text.is_empty() {
                        events.push((i, SlotEvent::Text(step.text)));
                    }
                    match step.next {
                        Ok(token) => job.next = Some(token),
                        Err(reason) => finish(slot, i, reason, &mut events),
                    }
                }
            }
        }
        events
    }

    /// Puts every active request's next tokens into the batch, up to one physical batch:
    /// returns `(slot, output row)` for each request included.
    ///
    /// In deterministic mode the batch holds one request, the next in turn after the last.
    fn fill_batch(&mut self) -> Vec<(usize, Option<i32>)> {
        let budget = self.ctx.n_ubatch() as usize;
        let mut included = Vec::new();
        self.ctx.clear_batch();
        let n = self.slots.len();
        // Slots `first..first + count` (wrapping): all of them, or the one whose turn it is.
        let (first, count) = if self.is_deterministic() {
            let ready = |s: &Slot| {
                s.job
                    .as_ref()
                    .is_some_and(|j| !j.pending.is_empty() || j.next.is_some())
            };
            let next = (1..=n)
                .map(|k| (self.turn + k) % n)
                .find(|&i| ready(&self.slots[i]));
            self.turn = next.unwrap_or(self.turn);
            (self.turn, usize::from(next.is_some()))
        } else {
            (0, n)
        };
        for i in (first..first + count).map(|i| i % n) {
            let slot = &mut self.slots[i];
            let Some(job) = slot.job.as_mut() else {
                continue;
            };
            let left = budget - self.ctx.batch_len();
            if left == 0 {
                break;
            }
            let (tokens, wants_logits): (Vec<Token>, bool) = if !job.pending.is_empty() {
                let k = slot.canonical.chunk(job.pending.len(), left);
                let t: Vec<Token> = job.pending.drain(..k).collect();
                (t, job.pending.is_empty())
            } else if let Some(t) = job.next.take() {
                (vec![t], true)
            } else {
                continue;
            };
            let mut out_row = None;
            for (j, &t) in tokens.iter().enumerate() {
                let logits = wants_logits && j + 1 == tokens.len();
                let row = self.ctx.push(t, slot.cached.len() + j, i, logits);
                if logits {
                    out_row = Some(row);
                }
            }
            job.in_flight = tokens;
            included.push((i, out_row));
        }
        included
    }
}

/// Ends the job of `slot`: flushes held-back text and reports the statistics.
fn finish(slot: &mut Slot, i: usize, reason: StopReason, events: &mut Vec<(usize, SlotEvent)>) {
    let Some(mut job) = slot.job.take() else {
        return;
    };
    let tail = job.generation.finish(&reason);
    if !tail.is_empty() {
        events.push((i, SlotEvent::Text(tail)));
    }
    let total = job.started.elapsed();
    let prompt_time = job.prompt_time.unwrap_or(total);
    events.push((
        i,
        SlotEvent::Finished(GenerationStats {
            prompt_tokens: job.prompt_len,
            cached_tokens: job.cached_tokens,
            generated_tokens: job.generation.generated(),
            prompt_time,
            generation_time: total.saturating_sub(prompt_time),
            stop_reason: reason,
        }),
    ));
}
