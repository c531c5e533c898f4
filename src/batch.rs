//! Continuous batching: several requests share one llama context (one sequence each), every
//! decode step batches the pending tokens of all active requests, and the capping callback
//! applies each row's own request settings, so capped and uncapped requests share a batch.

use std::sync::atomic::Ordering;
use std::time::Instant;

use llama_cpp_sys_2 as sys;

use crate::cap::hooks::Routing;
use crate::cap::{CapError, CapPlan, LayerStats};
use crate::error::{DecodeError, SessionError};
use crate::model::{Model, Token};
use crate::sampling::Sampler;
use crate::session::{
    GenerateParams, GenerationStats, Session, SessionParams, StopMatcher, StopReason, put_token,
};
use crate::tokenize::PieceDecoder;

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

struct Job {
    pending: Vec<Token>,
    prompt_len: usize,
    cached_tokens: usize,
    sampler: Sampler,
    decoder: PieceDecoder,
    stop: StopMatcher,
    max_tokens: Option<usize>,
    generated: usize,
    next: Option<Token>,
    cancelled: bool,
    started: Instant,
    prompt_time: Option<std::time::Duration>,
    capped: bool,
}

#[derive(Default)]
struct Slot {
    cached: Vec<Token>,
    /// The capping the cached keys and values were computed under: a prefix is only reused
    /// by a request with the same plan.
    cached_plan: Option<CapPlan>,
    job: Option<Job>,
}

impl Slot {
    fn reusable(&self, prompt: &[Token], plan: Option<&CapPlan>) -> usize {
        if self.cached_plan.as_ref() == plan {
            common_prefix(&self.cached, prompt)
        } else {
            0
        }
    }
}

/// Several requests over one model and one context.
pub struct BatchEngine {
    session: Session,
    slots: Vec<Slot>,
    n_ctx_slot: usize,
}

impl BatchEngine {
    /// An engine with `n_slots` slots; `params.n_ctx` is shared equally between them (as
    /// llama-server's `-c` and `-np`). Flash attention is off so a request's text never
    /// depends on which other requests share its batches.
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
        let mut session = Session::new(model, params)?;
        // Sequences get separate cache ranges of n_ctx / n_slots cells each.
        let n_ctx_slot = session.n_ctx() as usize / n_slots as usize;
        session.hooks.routing = Some(Routing {
            plans: vec![None; n_slots as usize],
            rows: Vec::new(),
            out_rows: Vec::new(),
            stats: vec![vec![LayerStats::default(); model.n_layer() as usize]; n_slots as usize],
        });
        Ok(Self {
            session,
            slots: (0..n_slots).map(|_| Slot::default()).collect(),
            n_ctx_slot,
        })
    }

    /// Applies control vectors to every request (or removes them with `None`); empties the
    /// cache. Call while no request runs.
    pub fn set_control_vector(
        &mut self,
        cv: Option<&crate::cap::ControlVector>,
    ) -> Result<(), crate::cap::ControlVectorError> {
        self.slots.iter_mut().for_each(|s| s.cached.clear());
        self.session.set_control_vector(cv)
    }

    /// The model.
    pub fn model(&self) -> &Model {
        self.session.model()
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
    /// the same capping `plan`.
    pub fn free_slot(&self, prompt: &[Token], plan: Option<&CapPlan>) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.job.is_none())
            .max_by_key(|(i, s)| (s.reusable(prompt, plan), usize::MAX - i))
            .map(|(i, _)| i)
    }

    /// Whether any request is running.
    pub fn is_busy(&self) -> bool {
        self.slots.iter().any(|s| s.job.is_some())
    }

    /// Requests running.
    pub fn active(&self) -> usize {
        self.slots.iter().filter(|s| s.job.is_some()).count()
    }

    /// Starts a request in a free `slot`, capped by `plan` (`None`: uncapped). The slot's
    /// cache is reused for the longest common prefix.
    pub fn start(
        &mut self,
        slot: usize,
        prompt: &[Token],
        params: &GenerateParams,
        plan: Option<CapPlan>,
    ) -> Result<(), crate::Error> {
        let n_ctx = self.n_ctx_slot;
        let Some(s) = self.slots.get_mut(slot).filter(|s| s.job.is_none()) else {
            return Err(DecodeError::Batch {
                reason: format!("slot {slot} is not free"),
            }
            .into());
        };
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
        let mut sampler = Sampler::new(self.session.model(), &params.sampling, n_ctx as u32)?;
        sampler.accept_prompt(prompt);
        // Keys and values computed under other capping are never reused.
        let common = s.reusable(prompt, plan.as_ref()).min(prompt.len() - 1);
        // SAFETY: a live context; drops positions [common, end) of this slot's sequence.
        unsafe {
            sys::llama_memory_seq_rm(
                sys::llama_get_memory(self.session.ctx.as_ptr()),
                slot as i32,
                common as i32,
                -1,
            )
        };
        s.cached.truncate(common);
        s.cached_plan.clone_from(&plan);
        let routing = self.session.hooks.routing.as_mut().expect("engine routing");
        routing.stats[slot]
            .iter_mut()
            .for_each(|st| *st = LayerStats::default());
        let capped = plan.is_some();
        routing.plans[slot] = plan;
        s.job = Some(Job {
            pending: prompt[common..].to_vec(),
            prompt_len: prompt.len(),
            cached_tokens: common,
            sampler,
            decoder: PieceDecoder::new(),
            stop: StopMatcher::new(&params.stop),
            max_tokens: params.max_tokens,
            generated: 0,
            next: None,
            cancelled: false,
            started: Instant::now(),
            prompt_time: None,
            capped,
        });
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
        let routing = self.session.hooks.routing.as_ref().expect("engine routing");
        let Some(Some(plan)) = routing.plans.get(slot) else {
            return Vec::new();
        };
        plan.capped_layers()
            .map(|(l, _)| (l, routing.stats[slot][l as usize]))
            .collect()
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
        let budget = self.session.n_ubatch as usize;
        let mut rows: Vec<u32> = Vec::new();
        let mut out_rows: Vec<u32> = Vec::new();
        // (slot, tokens added, batch index of its output row)
        let mut included: Vec<(usize, Vec<Token>, Option<i32>)> = Vec::new();
        let batch = &mut self.session.batch;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(job) = slot.job.as_mut() else {
                continue;
            };
            let left = budget - rows.len();
            if left == 0 {
                break;
            }
            let (tokens, wants_logits): (Vec<Token>, bool) = if !job.pending.is_empty() {
                let k = job.pending.len().min(left);
                let t: Vec<Token> = job.pending.drain(..k).collect();
                (t, job.pending.is_empty())
            } else if let Some(t) = job.next.take() {
                (vec![t], true)
            } else {
                continue;
            };
            let mut out_index = None;
            for (j, &t) in tokens.iter().enumerate() {
                let at = rows.len();
                let logits = wants_logits && j + 1 == tokens.len();
                // SAFETY: `at < budget <= n_batch`, the batch's capacity.
                unsafe { put_token(batch, at, t, slot.cached.len() + j, i, logits) };
                rows.push(i as u32);
                if logits {
                    out_rows.push(i as u32);
                    out_index = Some(at as i32);
                }
            }
            included.push((i, tokens, out_index));
        }
        if rows.is_empty() {
            return events;
        }
        batch.n_tokens = rows.len() as i32;
        {
            let hooks = &mut self.session.hooks;
            let routing = hooks.routing.as_mut().expect("engine routing");
            routing.rows = rows;
            routing.out_rows = out_rows;
            hooks.seen.iter_mut().for_each(|s| *s = 0);
        }
        // SAFETY: a live context and a batch filled above.
        let code = unsafe { sys::llama_decode(self.session.ctx.as_ptr(), self.session.batch) };
        let failure = self.session.hooks.failure.take();
        self.session
            .flags
            .hook_failed
            .store(false, Ordering::SeqCst);
        if code != 0 || failure.is_some() {
            let why = failure.unwrap_or_else(|| format!("llama_decode failed with code {code}"));
            for (i, _, _) in included {
                let slot = &mut self.slots[i];
                slot.job = None;
                slot.cached.clear();
                // SAFETY: a live context; forgets this slot's sequence.
                unsafe {
                    sys::llama_memory_seq_rm(
                        sys::llama_get_memory(self.session.ctx.as_ptr()),
                        i as i32,
                        -1,
                        -1,
                    )
                };
                events.push((i, SlotEvent::Failed(why.clone())));
            }
            return events;
        }
        let missing = self.missing_capped_layer();
        let model = self.session.model().clone();
        let ctx = self.session.ctx.as_ptr();
        let n_ctx = self.n_ctx_slot;
        for (i, tokens, out_index) in included {
            let slot = &mut self.slots[i];
            slot.cached.extend_from_slice(&tokens);
            let Some(job) = slot.job.as_mut() else {
                continue;
            };
            if job.capped {
                if let Some(layer) = missing {
                    let e = CapError::NoHookPoint {
                        arch: model.info().architecture.clone(),
                        layer,
                    };
                    slot.job = None;
                    events.push((i, SlotEvent::Failed(e.to_string())));
                    continue;
                }
            }
            let Some(idx) = out_index else {
                continue; // more prompt to decode
            };
            if job.prompt_time.is_none() {
                job.prompt_time = Some(job.started.elapsed());
            }
            if job.cancelled {
                finish(slot, i, StopReason::Cancelled, &mut events);
                continue;
            }
            if job.max_tokens.is_some_and(|m| job.generated >= m) {
                finish(slot, i, StopReason::MaxTokens, &mut events);
                continue;
            }
            let token = job.sampler.sample(ctx, idx);
            if model.is_eog(token) {
                finish(slot, i, StopReason::EndOfGeneration, &mut events);
                continue;
            }
            job.generated += 1;
            let piece = match model.token_to_piece(token, false) {
                Ok(p) => p,
                Err(e) => {
                    slot.job = None;
                    events.push((i, SlotEvent::Failed(e.to_string())));
                    continue;
                }
            };
            let text = job.decoder.push(&piece);
            let (emit, hit) = job.stop.push(&text);
            if !emit.is_empty() {
                events.push((i, SlotEvent::Text(emit)));
            }
            if let Some(s) = hit {
                finish(slot, i, StopReason::StopString(s), &mut events);
                continue;
            }
            if slot.cached.len() >= n_ctx {
                finish(slot, i, StopReason::ContextFull, &mut events);
                continue;
            }
            job.next = Some(token);
        }
        events
    }

    /// A block some running capped request caps whose `l_out` the last decode never offered.
    fn missing_capped_layer(&self) -> Option<u32> {
        let hooks = &self.session.hooks;
        let routing = hooks.routing.as_ref()?;
        routing
            .plans
            .iter()
            .flatten()
            .flat_map(|p| p.capped_layers().map(|(l, _)| l))
            .find(|&l| hooks.seen.get(l as usize).is_some_and(|&n| n == 0))
    }
}

fn common_prefix(a: &[Token], b: &[Token]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Ends the job of `slot`: flushes held-back text and reports the statistics.
fn finish(slot: &mut Slot, i: usize, reason: StopReason, events: &mut Vec<(usize, SlotEvent)>) {
    let Some(mut job) = slot.job.take() else {
        return;
    };
    if !matches!(reason, StopReason::StopString(_)) {
        let tail = job.stop.finish(&job.decoder.finish());
        if !tail.is_empty() {
            events.push((i, SlotEvent::Text(tail)));
        }
    }
    let total = job.started.elapsed();
    let prompt_time = job.prompt_time.unwrap_or(total);
    events.push((
        i,
        SlotEvent::Finished(GenerationStats {
            prompt_tokens: job.prompt_len,
            cached_tokens: job.cached_tokens,
            generated_tokens: job.generated,
            prompt_time,
            generation_time: total.saturating_sub(prompt_time),
            stop_reason: reason,
        }),
    ));
}
