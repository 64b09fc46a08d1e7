//! Comparisons of cpuslab and rseq-core against peers (see docs/benchmarks.md).
