//! A user's program: the three lines, then statistics and options.

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;

fn main() {
    let numbers: Vec<u64> = (0..100_000).collect();
    let mut config = cpuslab::config();
    config.decay_ms = 200;
    config.apply().expect("the decay can change at any time");
    let stats = cpuslab::stats();
    assert!(stats.allocated >= numbers.len() * 8);
    let mut json = [0u8; cpuslab::Stats::JSON_MAX_BYTES];
    let len = stats.to_json(&mut json).expect("JSON_MAX_BYTES hold the statistics");
    println!(
        "external program: rseq mode {:?}, {} bytes allocated, decay {} ms, {len} bytes of JSON",
        stats.mode,
        stats.allocated,
        cpuslab::config().decay_ms
    );
    drop(numbers);
    cpuslab::trim();
}
