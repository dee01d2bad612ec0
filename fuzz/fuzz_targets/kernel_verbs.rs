//! Thin shim: the input type, the harness and its invariants live in `vmsi_fuzz_common::kernel_verbs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmsi_fuzz_common::kernel_verbs::fuzz(data));
