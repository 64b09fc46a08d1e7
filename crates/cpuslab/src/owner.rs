//! What a pointer is the start of, from the address alone, in one page-map walk:
//! the C API's `free`, `realloc` and `malloc_usable_size` start here and hand the
//! answer down, so no tier looks the pointer up again.

use crate::pagemap::{self, Entry};
use crate::size_class::Class;
use crate::span::{object_index, Span, SpanKind};

/// What `find` found at a pointer: the start of a small object of a class, or of
/// a large object (its page-map entry, through which it is freed).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Found {
    Small(Class),
    Large(LargeAt),
}

/// The start of a large object: its page-map entry and record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LargeAt {
    pub entry: Entry,
    pub span: &'static Span,
}

/// Which object `ptr` is the start of, or `None` if it is not the start of an
/// object of ours (null, foreign, interior, one past the end, a free run...).
/// One page-map walk; safe on any pointer value, never faults. For small objects
/// it cannot tell a free object from a live one (free objects sit in the upper
/// tiers' caches).
///
/// A small object's class comes from the page-map entry's tag, so what the
/// caller does with it (the per-CPU push) need not wait for the span record;
/// the record's checks (kind, class, object boundary) still decide, and run
/// alongside.
#[inline(always)]
pub(crate) fn find(ptr: *const u8) -> Option<Found> {
    let addr = ptr as usize;
    let entry = pagemap::entry(addr)?;
    let (span, tag) = entry.tagged();
    let span = span?;
    if let Some(class) = tag {
        let valid = span.kind() == SpanKind::Small
            && span.class() == Some(class)
            && object_index(span.start(), class, addr).is_some();
        return valid.then_some(Found::Small(class));
    }
    match span.kind() {
        SpanKind::Small => {
            let class = span.class()?;
            object_index(span.start(), class, addr)?;
            Some(Found::Small(class))
        }
        SpanKind::Large if span.start() == addr => Some(Found::Large(LargeAt { entry, span })),
        _ => None,
    }
}

/// Who owns a pointer, for the public API and statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The start of an object of this size class.
    Small(Class),
    /// The start of a large object; `usable_size` is its whole mapping.
    Large { usable_size: usize },
}

impl Owner {
    /// Bytes usable at the pointer.
    pub fn usable_size(self) -> usize {
        match self {
            Owner::Small(class) => class.size(),
            Owner::Large { usable_size } => usable_size,
        }
    }
}

impl Found {
    /// What the public API says about it.
    pub(crate) fn owner(self) -> Owner {
        match self {
            Found::Small(class) => Owner::Small(class),
            Found::Large(large) => Owner::Large {
                usable_size: large.span.bytes(),
            },
        }
    }
}

/// `find` for the public API: which object `ptr` is the start of, if any.
#[inline]
pub fn lookup(ptr: *const u8) -> Option<Owner> {
    find(ptr).map(Found::owner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::central::{alloc_batch, free_batch};
    use crate::large::{alloc_large, free_large};
    use crate::size_class::class_of;

    #[test]
    fn lookup_tells_small_large_and_garbage() {
        let _serial = crate::test_serial();
        let class = class_of(48, 16).unwrap();
        let mut objs = [core::ptr::null_mut(); 4];
        assert_eq!(alloc_batch(class, &mut objs), 4);
        for &p in &objs {
            assert_eq!(lookup(p), Some(Owner::Small(class)));
            assert_eq!(lookup(p.wrapping_add(1)), None);
            assert_eq!(lookup(p.wrapping_add(47)), None);
        }
        let big = alloc_large(1 << 20, 16);
        assert_eq!(
            lookup(big),
            Some(Owner::Large {
                usable_size: 1 << 20
            })
        );
        assert_eq!(lookup(big.wrapping_add(4096)), None);
        // One past the end may start another block (large blocks are carved
        // from cached mappings), never this one.
        let Some(Found::Large(this)) = find(big) else {
            panic!("big is large");
        };
        assert!(!matches!(find(big.wrapping_add(1 << 20)),
            Some(Found::Large(next)) if core::ptr::eq(next.span, this.span)));
        let local = 0u64;
        for p in [
            core::ptr::null(),
            &local as *const u64 as *const u8,
            usize::MAX as *const u8,
        ] {
            assert_eq!(lookup(p), None);
        }
        let mut stats = crate::stats::LowerStats::new();
        crate::stats::stats_into(&mut stats);
        assert!(stats.large.count >= 1 && stats.classes[class.index()].objects_in_use >= 4);
        // SAFETY: the objects are given up.
        unsafe {
            free_batch(class, &objs);
            free_large(big);
        }
        assert_eq!(lookup(big), None);
    }

    #[test]
    fn one_past_the_last_object_is_not_an_object() {
        let _serial = crate::test_serial();
        for class in Class::all() {
            let mut obj = [core::ptr::null_mut(); 1];
            assert_eq!(alloc_batch(class, &mut obj), 1);
            let span = pagemap::get(obj[0] as usize).unwrap();
            let past = span.start() + class.objects_per_span() * class.size();
            if past < span.end() {
                assert_eq!(
                    lookup(past as *const u8),
                    None,
                    "tail of class {}",
                    class.size()
                );
            }
            // The page after the span belongs to something else (or nothing).
            assert!(pagemap::get(span.end()).is_none_or(|s| !core::ptr::eq(s, span)));
            assert_eq!(
                lookup((span.start() - 1) as *const u8).filter(|o| *o == Owner::Small(class)),
                None
            );
            // SAFETY: given up.
            unsafe { free_batch(class, &obj) };
        }
    }
}
