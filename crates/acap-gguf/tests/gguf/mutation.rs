//! Deterministic mutation testing: 10,000+ corrupted variants of a valid file, fixed seed.
//! Every one must parse to `Ok` or `Err` without panicking, and whatever parses must be safe
//! to read completely.

use std::panic::{AssertUnwindSafe, catch_unwind};

use acap_gguf::GgufFile;

use crate::common::sample_bytes;

/// xorshift64*: a tiny deterministic generator, so the corpus never changes between runs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const INTERESTING: [u64; 10] = [
    0,
    1,
    2,
    0x7f,
    0xff,
    0xffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
    u64::MAX / 2,
    1 << 32,
];

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut m = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        if m.is_empty() {
            break;
        }
        let at = rng.below(m.len());
        match rng.below(7) {
            0 => m[at] ^= 1 << rng.below(8),
            1 => m[at] = rng.next() as u8,
            2 => {
                // Overwrite a u32 or u64 field with an interesting value.
                let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let width = if rng.below(2) == 0 { 4 } else { 8 };
                for (i, b) in v.iter().take(width).enumerate() {
                    if let Some(slot) = m.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
            3 => m.truncate(at),
            4 => {
                let len = rng.below(16).min(m.len() - at);
                m.drain(at..at + len);
            }
            5 => {
                let len = rng.below(16).min(m.len() - at);
                let chunk = m[at..at + len].to_vec();
                let to = rng.below(m.len());
                m.splice(to..to, chunk);
            }
            _ => m.insert(at, rng.next() as u8),
        }
    }
    m
}

/// Reads everything a parsed file offers, so a bad bound would surface as a panic.
fn exercise(f: &GgufFile) -> usize {
    let mut n = f.metadata().len();
    for (k, v) in f.metadata() {
        n += k.len() + v.type_name().len();
        let _ = f.get_str(k);
        let _ = f.get_uint(k);
    }
    for info in f.tensors() {
        let view = f.view(info);
        n += view.data().len();
        if let Ok(values) = view.to_f32_vec() {
            n += values.len();
        }
        let _ = view.as_f32_slice();
    }
    n
}

#[test]
fn ten_thousand_mutations_never_panic() {
    let base = sample_bytes();
    let mut rng = Rng(0x5eed_acab_2026_0001);
    let (mut ok, mut err) = (0, 0);
    for i in 0..12_000 {
        let input = mutate(&mut rng, &base);
        let outcome = catch_unwind(AssertUnwindSafe(|| match GgufFile::from_bytes(input) {
            Ok(f) => {
                exercise(&f);
                true
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                false
            }
        }));
        match outcome {
            Ok(true) => ok += 1,
            Ok(false) => err += 1,
            Err(_) => panic!("mutation {i} panicked"),
        }
    }
    // Both outcomes must occur, or the mutator (or the parser) is broken.
    eprintln!("mutation outcomes: ok {ok}, err {err}");
    assert!(ok > 500 && err > 5_000, "ok {ok}, err {err}");
}
