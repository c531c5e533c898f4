//! Writes a deterministic corpus of the tiny test model with hostile header *values* (see
//! `acap_testkit::header_mutations`). `scripts/header-mutations.sh` loads each variant in its
//! own `acap-cli` process and counts refusals, successes and aborts.
//!
//!     cargo run --example header_mutations -- OUT_DIR [N]

fn main() {
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(args.next().expect("usage: header_mutations OUT_DIR [N]"));
    let n: usize = args.next().map_or(2000, |s| s.parse().expect("N"));
    std::fs::create_dir_all(&out).unwrap();
    let src = acap_testkit::tiny(acap::QuantType::Q8_0);
    let mut log = String::new();
    for (i, changes) in acap_testkit::header_mutations(acap_testkit::MUTATION_SEED, n)
        .iter()
        .enumerate()
    {
        let path = out.join(format!("v{i:05}.gguf"));
        acap_testkit::with_metadata(&src, &path, changes);
        log.push_str(&format!(
            "v{i:05} {}\n",
            acap_testkit::describe_changes(changes)
        ));
    }
    std::fs::write(out.join("variants.txt"), log).unwrap();
    eprintln!("{n} variants in {}", out.display());
}
