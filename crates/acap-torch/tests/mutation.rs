//! A deterministic mutation run over the checkpoint fixtures (written without torch by
//! `scripts/make-pt-fixtures.py`): 3,000 variants with flipped, overwritten, inserted or
//! removed bytes, in the archive and inside the pickle, each read as a tensor and as a dict.
//! None may panic; every one must finish (the interpreter has no unbounded loop: each opcode
//! consumes input). Longer runs: `fuzz/` (`read_pt`).

use std::path::Path;

/// xorshift64*: a fixed seed, the same variants on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn fixtures() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pt");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn mutate(rng: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len());
        match rng.below(5) {
            0 => b[at] ^= 1 << rng.below(8),
            1 => b[at] = rng.next() as u8,
            // Values that make counts, lengths and sizes extreme.
            2 => b[at] = [0x00, 0xff, 0x7f, 0x80][rng.below(4)],
            3 => b.insert(at, rng.next() as u8),
            _ => {
                b.remove(at);
            }
        }
    }
    b
}

#[test]
fn mutated_checkpoints_never_panic() {
    let seeds = fixtures();
    assert!(seeds.len() >= 10, "the fixtures are missing");
    let mut rng = Rng(0x5eed_acab_0000_0001);
    let (mut ok, mut refused) = (0, 0);
    for i in 0..3000 {
        let seed = seeds[i % seeds.len()].clone();
        let bytes = mutate(&mut rng, seed);
        let t = acap_torch::tensor_from_bytes(bytes.clone());
        let d = acap_torch::number_dict_from_bytes(bytes);
        for r in [t.map(|_| ()), d.map(|_| ())] {
            match r {
                Ok(()) => ok += 1,
                Err(e) => {
                    // Every refusal says where: the file (here `<memory>`).
                    assert!(e.to_string().starts_with("<memory>"), "{e}");
                    refused += 1;
                }
            }
        }
    }
    // The mutations reach past the archive's checksums into the content.
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
}

/// Each fixture's entries, to rebuild archives around a mutated pickle (valid checksums, so
/// the mutation reaches the interpreter and the tensor gathering).
fn entries(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(archive.to_vec())).unwrap();
    (0..z.len())
        .map(|i| {
            let mut e = z.by_index(i).unwrap();
            let name = e.name().unwrap().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

fn rebuild(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        z.start_file(name.as_str(), opts).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap().into_inner()
}

#[test]
fn mutated_pickles_inside_valid_archives_never_panic() {
    let seeds: Vec<_> = fixtures().iter().map(|f| entries(f)).collect();
    let mut rng = Rng(0x5eed_acab_0000_0002);
    let (mut ok, mut refused) = (0, 0);
    for i in 0..3000 {
        let mut e = seeds[i % seeds.len()].clone();
        let pkl = e
            .iter_mut()
            .find(|(n, _)| n.ends_with("/data.pkl"))
            .unwrap();
        pkl.1 = mutate(&mut rng, std::mem::take(&mut pkl.1));
        let _ = acap_torch::fuzz_unpickle(&pkl.1);
        let bytes = rebuild(&e);
        match acap_torch::tensor_from_bytes(bytes.clone()) {
            Ok(t) => {
                assert_eq!(t.data.len(), t.shape.iter().product::<usize>());
                ok += 1;
            }
            Err(_) => refused += 1,
        }
        let _ = acap_torch::number_dict_from_bytes(bytes);
    }
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
    eprintln!("pickle mutations: {ok} read, {refused} refused");
}
