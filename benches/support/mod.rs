//! What the benchmarks share: guest sequences, the designs compared, and the record.

pub mod designs;
pub mod guest;
pub mod report;
