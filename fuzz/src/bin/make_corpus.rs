//! Writes the seed corpus of every fuzz target: small valid inputs (and a few near misses) made
//! with x0x itself, so that every target starts from inputs that reach deep (signed envelopes,
//! a real gossip exchange, task list states, well-formed keys).
//!
//! Usage: `make_corpus DIR` writes `DIR/<target>/seed-<n>` for each target (overwriting earlier
//! seeds; other files in DIR are kept). `scripts/fuzz.sh` runs it before fuzzing, with
//! `DIR = fuzz/corpus`. Signatures are randomized (ML-DSA is hedged), so the bytes of signed
//! seeds change from run to run; what they exercise does not.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    for target in x0x_fuzz::TARGETS {
        let out = dir.join(target);
        std::fs::create_dir_all(&out).expect("cannot create the corpus directory");
        let seeds = x0x_fuzz::seeds(target);
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(out.join(format!("seed-{i:02}")), seed).expect("cannot write a seed");
        }
        println!("{target}: {} seeds in {}", seeds.len(), out.display());
    }
    // The seeds must reach deep: the exchange is accepted and its envelopes delivered.
    let mut node = x0x_fuzz::Node::new(false);
    node.connection(&x0x_fuzz::seeds("frame")[0]);
    println!(
        "frame: seed-00 makes the node send {} frames and deliver {} messages",
        node.sent, node.delivered
    );
    assert!(node.delivered > 0, "the frame seeds deliver nothing");
    // The exchange followed by two origin frames delivers both of them too.
    let seeds = x0x_fuzz::seeds("frame");
    let mut with_origins = x0x_fuzz::Node::new(false);
    with_origins.connection(&seeds[seeds.len() - 2]);
    println!(
        "frame: seed-{:02} (origin frames) delivers {} messages",
        seeds.len() - 2,
        with_origins.delivered
    );
    assert_eq!(
        with_origins.delivered,
        node.delivered + 2,
        "the origin frames are not delivered"
    );
}
