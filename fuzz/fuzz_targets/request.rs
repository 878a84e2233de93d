//! Fuzzes the request path: a script of ROUTER messages and model reports (the format is
//! `zcoord::harness::script`) runs through the framing, size limit, decoder, method parser and
//! core, and every reply and event must keep the invariants in `zcoord::harness`. Any panic, or
//! any broken invariant, is a crash. tests/fuzz_corpus.rs replays the corpus the same way.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zcoord::harness::Harness;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = Harness::new().run(data) {
        panic!("{violation}");
    }
});
