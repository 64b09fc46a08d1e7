//! Arbitrary sequences of allocator operations, run through `cpuslab::CpuSlab`'s
//! `GlobalAlloc` methods and checked against a model.
//!
//! The model keeps every live block (address -> size, alignment, pattern tag) in
//! a `BTreeMap`, so that a new block is checked against its neighbours for
//! overlap. Every block is filled with a pattern derived from its tag and checked
//! before realloc, free and hand-off, and after realloc (the kept prefix).
//! Zeroed blocks must be zero; alignment must be honoured; `usable_size` must
//! cover the size and `owns` must say yes. A hand-off moves a block to a helper
//! thread that checks and frees it (a cross-thread free).
//!
//! This binary's own global allocator stays the system one: the model, the
//! channel and libFuzzer never touch cpuslab.
#![no_main]

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::sync::mpsc::{channel, sync_channel, Sender, SyncSender};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

static SLAB: cpuslab::CpuSlab = cpuslab::CpuSlab;

/// Operations per input, at most.
const MAX_OPS: usize = 512;
/// Largest size requested (beyond the 256 KiB classes: large objects too).
const MAX_SIZE: usize = 1 << 20;
/// log2 of the largest alignment requested (64 KiB).
const MAX_ALIGN_SHIFT: u8 = 16;

#[derive(Arbitrary, Debug)]
enum Op {
    Alloc {
        size: Size,
        align_shift: u8,
    },
    AllocZeroed {
        size: Size,
        align_shift: u8,
    },
    Realloc {
        index: u16,
        size: Size,
    },
    Dealloc {
        index: u16,
    },
    /// C-style free by address.
    FreeByAddress {
        index: u16,
    },
    /// Moves the block to the helper thread, which checks and frees it.
    HandOff {
        index: u16,
    },
    Check {
        index: u16,
    },
    Trim,
}

/// A size, mostly small: the top two bits pick the range.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Size(u32);

impl Size {
    fn get(self) -> usize {
        let v = self.0 as usize;
        let limit = match self.0 >> 30 {
            0 => 256,
            1 => 4096,
            2 => 300_000,
            _ => MAX_SIZE,
        };
        v % limit + 1
    }
}

fn align_of(shift: u8) -> usize {
    1 << (shift % (MAX_ALIGN_SHIFT + 1))
}

#[derive(Clone, Copy, Debug)]
struct Block {
    size: usize,
    align: usize,
    tag: u64,
}

impl Block {
    fn layout(&self) -> Layout {
        Layout::from_size_align(self.size, self.align).unwrap()
    }
}

/// The 8-byte word repeated over a block; never zero.
fn word(tag: u64) -> u64 {
    let mut x = tag.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)) | 1
}

/// Fills `len` bytes with `word(tag)` repeated (doubling copies).
///
/// # Safety
/// `p` points to `len` writable bytes.
unsafe fn fill(p: *mut u8, len: usize, tag: u64) {
    let bytes = word(tag).to_le_bytes();
    let first = len.min(8);
    // SAFETY: first <= len.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, first) };
    let mut done = first;
    while done < len {
        let n = done.min(len - done);
        // SAFETY: [0, done) and [done, done + n) are disjoint parts of the block.
        unsafe { std::ptr::copy_nonoverlapping(p, p.add(done), n) };
        done += n;
    }
}

/// Whether the first `len` bytes hold what `fill` wrote.
///
/// # Safety
/// `p` points to `len` readable bytes.
unsafe fn intact(p: *const u8, len: usize, tag: u64) -> bool {
    // SAFETY: the caller's promise.
    let block = unsafe { std::slice::from_raw_parts(p, len) };
    let bytes = word(tag).to_le_bytes();
    let first = len.min(8);
    block[..first] == bytes[..first] && (len <= 8 || block[8..] == block[..len - 8])
}

/// Whether `len` bytes at `p` are zero.
///
/// # Safety
/// `p` points to `len` readable bytes.
unsafe fn zero(p: *const u8, len: usize) -> bool {
    // SAFETY: the caller's promise.
    let block = unsafe { std::slice::from_raw_parts(p, len) };
    block.iter().all(|&b| b == 0)
}

enum Message {
    Free(usize, Block),
    /// Answered once every earlier block is freed.
    Sync(SyncSender<()>),
}

/// The helper thread that frees handed-off blocks. It aborts on a corrupted
/// block, since a panic there would not reach libFuzzer.
fn helper() -> &'static Sender<Message> {
    static HELPER: OnceLock<Sender<Message>> = OnceLock::new();
    HELPER.get_or_init(|| {
        let (tx, rx) = channel::<Message>();
        std::thread::spawn(move || {
            for message in rx {
                match message {
                    Message::Free(addr, b) => {
                        // SAFETY: a live block of b.size bytes, now owned here.
                        if !unsafe { intact(addr as *const u8, b.size, b.tag) } {
                            eprintln!("handed-off block {addr:#x} {b:?} corrupted");
                            std::process::abort();
                        }
                        // SAFETY: allocated by SLAB with this layout, given up.
                        unsafe { SLAB.dealloc(addr as *mut u8, b.layout()) };
                    }
                    Message::Sync(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        tx
    })
}

fn sync_helper() {
    let (tx, rx) = sync_channel(1);
    helper().send(Message::Sync(tx)).unwrap();
    rx.recv().unwrap();
}

struct Model {
    live: BTreeMap<usize, Block>,
    next_tag: u64,
}

impl Model {
    /// Checks a fresh block against the model and records it.
    fn insert(&mut self, p: *mut u8, size: usize, align: usize, zeroed: bool) {
        let addr = p as usize;
        assert_eq!(addr % align, 0, "{p:p} not aligned to {align}");
        let end = addr + size;
        if let Some((&prev, b)) = self.live.range(..=addr).next_back() {
            assert!(
                prev + b.size <= addr,
                "new block {addr:#x}+{size} overlaps live {prev:#x}+{}",
                b.size
            );
        }
        if let Some((&next, b)) = self.live.range(addr..).next() {
            assert!(
                end <= next,
                "new block {addr:#x}+{size} overlaps live {next:#x}+{}",
                b.size
            );
        }
        assert!(cpuslab::owns(p), "owns({p:p}) is false");
        let usable = cpuslab::usable_size(p);
        assert!(
            usable.is_some_and(|u| u >= size),
            "usable_size({p:p}) = {usable:?} < {size}"
        );
        if zeroed {
            // SAFETY: a fresh block of size bytes.
            assert!(
                unsafe { zero(p, size) },
                "alloc_zeroed block {p:p} not zero"
            );
        }
        self.next_tag += 1;
        let b = Block {
            size,
            align,
            tag: self.next_tag,
        };
        // SAFETY: a fresh block of size bytes.
        unsafe { fill(p, size, b.tag) };
        self.live.insert(addr, b);
    }

    fn pick(&self, index: u16) -> Option<(usize, Block)> {
        if self.live.is_empty() {
            return None;
        }
        let i = index as usize % self.live.len();
        self.live.iter().nth(i).map(|(&a, &b)| (a, b))
    }

    /// Removes a block from the model after checking its contents.
    fn take(&mut self, index: u16) -> Option<(usize, Block)> {
        let (addr, b) = self.pick(index)?;
        self.verify(addr, &b);
        self.live.remove(&addr);
        Some((addr, b))
    }

    fn verify(&self, addr: usize, b: &Block) {
        // SAFETY: a live block of b.size bytes.
        assert!(
            unsafe { intact(addr as *const u8, b.size, b.tag) },
            "block {addr:#x} {b:?} corrupted"
        );
    }
}

fn run(ops: &[Op]) {
    let mut model = Model {
        live: BTreeMap::new(),
        next_tag: 0,
    };
    for op in ops.iter().take(MAX_OPS) {
        match *op {
            Op::Alloc { size, align_shift } | Op::AllocZeroed { size, align_shift } => {
                let zeroed = matches!(op, Op::AllocZeroed { .. });
                let (size, align) = (size.get(), align_of(align_shift));
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: size >= 1.
                let p = unsafe {
                    if zeroed {
                        SLAB.alloc_zeroed(layout)
                    } else {
                        SLAB.alloc(layout)
                    }
                };
                assert!(!p.is_null(), "{layout:?} returned null");
                model.insert(p, size, align, zeroed);
            }
            Op::Realloc { index, size } => {
                let Some((addr, b)) = model.take(index) else {
                    continue;
                };
                let new_size = size.get();
                // SAFETY: a live block with this layout; new_size >= 1, small.
                let p = unsafe { SLAB.realloc(addr as *mut u8, b.layout(), new_size) };
                assert!(!p.is_null(), "realloc {b:?} -> {new_size} returned null");
                let kept = b.size.min(new_size);
                // SAFETY: the new block holds new_size >= kept bytes.
                assert!(
                    unsafe { intact(p, kept, b.tag) },
                    "realloc {addr:#x} {b:?} -> {p:p} {new_size}: prefix lost"
                );
                model.insert(p, new_size, b.align, false);
            }
            Op::Dealloc { index } => {
                if let Some((addr, b)) = model.take(index) {
                    // SAFETY: a live block with this layout, given up.
                    unsafe { SLAB.dealloc(addr as *mut u8, b.layout()) };
                }
            }
            Op::FreeByAddress { index } => {
                if let Some((addr, _)) = model.take(index) {
                    // SAFETY: a live block from this allocator, given up.
                    unsafe { cpuslab::free(addr as *mut u8) };
                }
            }
            Op::HandOff { index } => {
                if let Some((addr, b)) = model.take(index) {
                    helper().send(Message::Free(addr, b)).unwrap();
                }
            }
            Op::Check { index } => {
                if let Some((addr, b)) = model.pick(index) {
                    model.verify(addr, &b);
                    let usable = cpuslab::usable_size(addr as *const u8);
                    assert!(usable.is_some_and(|u| u >= b.size));
                }
            }
            Op::Trim => cpuslab::trim(),
        }
    }
    // Free everything so that nothing carries over to the next input.
    let all: Vec<(usize, Block)> = model.live.iter().map(|(&a, &b)| (a, b)).collect();
    for (addr, b) in all {
        model.verify(addr, &b);
        // SAFETY: a live block with this layout, given up.
        unsafe { SLAB.dealloc(addr as *mut u8, b.layout()) };
    }
    sync_helper();
}

fuzz_target!(|ops: Vec<Op>| {
    run(&ops);
});
