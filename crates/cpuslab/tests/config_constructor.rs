//! docs/tuning.md's way to set a start-up option from code: a constructor in
//! `.init_array` runs before the first allocation of a Rust program (the
//! runtime's own allocations come after it), so it may still choose the index.

use cpuslab::Index;

#[global_allocator]
static GLOBAL: cpuslab::CpuSlab = cpuslab::CpuSlab;

#[used]
#[link_section = ".init_array"]
static CONFIGURE: extern "C" fn() = {
    extern "C" fn configure() {
        let mut config = cpuslab::config();
        config.index = Index::Cpu;
        let _ = config.apply();
    }
    configure
};

#[test]
fn a_constructor_sets_the_index_before_first_use() {
    let blocks: Vec<Box<u64>> = (0..1000).map(Box::new).collect();
    assert_eq!(cpuslab::config().index, Index::Cpu);
    assert_eq!(cpuslab::stats().index, Index::Cpu);
    drop(blocks);
}
