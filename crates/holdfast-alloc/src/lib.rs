//! The global allocator of `holdfast` (and of `bench/minimal-proxy`, so that the allocator is
//! not part of the difference between them): mimalloc.
//!
//! The `mimalloc` crate's `MiMalloc` sends every allocation through `mi_malloc_aligned`,
//! whatever its alignment. In mimalloc 3 that call's fast path takes only blocks of up to
//! 1 KiB whose free block happens to be aligned; every larger block (hyper's buffers, the
//! boxed request future, header maps) goes through `mi_theap_malloc_zero_aligned_at_generic`
//! before it reaches the plain allocation. Under callgrind that was ~1,550 instructions of
//! allocation per proxied request, 60,239 calls for 5,000 requests, 26,899 of them by the
//! generic path. Here a layout whose alignment mimalloc gives every block anyway (16 bytes,
//! or the size for smaller blocks: `mi_malloc`'s guarantee) goes to `mi_malloc`, `mi_zalloc` and `mi_realloc` directly; any
//! other to `MiMalloc`. Freeing is `mi_free` either way.

#![no_std]

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use libmimalloc_sys as ffi;

/// The alignment every mimalloc block of at least this size has (`MI_MAX_ALIGN_SIZE`).
const MIN_ALIGN: usize = 16;

/// Whether `mi_malloc(size)` returns a block aligned for `align`.
#[inline]
fn plain(align: usize, size: usize) -> bool {
    align <= MIN_ALIGN && align <= size
}

/// mimalloc, entered by its plain functions where the layout allows (see the crate's
/// comment).
pub struct Mimalloc;

// SAFETY: every block comes from mimalloc and goes back to it: `mi_malloc`, `mi_zalloc`
// and `mi_realloc` return blocks aligned to 16 bytes when the size is at least 16 and to the
// size's own power-of-two alignment below that (mimalloc's documented guarantee), which
// `plain` checks against the layout; other layouts go to `mimalloc::MiMalloc`, which uses the
// aligned functions. `mi_free` frees a block from either.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align(), layout.size()) {
            // SAFETY: a plain allocation of `size` bytes; the alignment is checked above.
            unsafe { ffi::mi_malloc(layout.size()).cast() }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align(), layout.size()) {
            // SAFETY: as in `alloc`.
            unsafe { ffi::mi_zalloc(layout.size()).cast() }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { ffi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain(layout.align(), new_size) {
            // SAFETY: `ptr` came from mimalloc; the new block's alignment is checked above and
            // `mi_realloc` keeps the contents up to the smaller size.
            unsafe { ffi::mi_realloc(ptr.cast::<c_void>(), new_size).cast() }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
        }
    }
}

/// Give the calling thread's free memory back to the system now: mimalloc's pages that hold
/// no live block, which it otherwise purges only after `MIMALLOC_PURGE_DELAY` (1 s) and only
/// when the thread next allocates. A worker whose connections have just gone idle calls this
/// (the edge's `set_allocator_trim`): after a burst nothing allocates, so without it the
/// pages the burst freed would stay resident. Costs a walk over the thread's pages.
pub fn release_free_pages() {
    // SAFETY: `mi_collect` takes no pointer; it frees only pages without live blocks.
    unsafe { mi_collect(true) }
}

// libmimalloc-sys declares `mi_collect` only with its `extended` feature, which would add a
// crate for C types; the function is in the library it builds either way.
extern "C" {
    fn mi_collect(force: bool);
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[test]
    fn every_layout_gets_a_block_aligned_for_it() {
        let a = Mimalloc;
        let mut blocks = Vec::new();
        for align in [1usize, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [1usize, 7, 8, 15, 16, 24, 40, 100, 1024, 1025, 8192, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero size; freed below with the same layout.
                let p = unsafe { a.alloc(layout) };
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "size {size}, align {align}");
                blocks.push((p, layout));
            }
        }
        for (p, layout) in blocks {
            // SAFETY: allocated above with this layout.
            unsafe { a.dealloc(p, layout) };
        }
    }

    #[test]
    fn realloc_and_zeroed_blocks_keep_their_alignment_and_contents() {
        let a = Mimalloc;
        for align in [8usize, 16, 64] {
            let layout = Layout::from_size_align(24, align).unwrap();
            // SAFETY: a non-zero size.
            let p = unsafe { a.alloc_zeroed(layout) };
            assert!(!p.is_null());
            // SAFETY: 24 bytes were allocated (and zeroed) at `p`.
            let zeroed = unsafe { core::slice::from_raw_parts(p, 24) };
            assert!(zeroed.iter().all(|b| *b == 0));
            // SAFETY: `p` has 24 writable bytes.
            unsafe { p.write(0xAB) };
            // SAFETY: `p` came from `a` with `layout`; 5000 is non-zero.
            let q = unsafe { a.realloc(p, layout, 5000) };
            assert!(!q.is_null());
            assert_eq!(q as usize % align, 0);
            // SAFETY: the first byte was kept by the reallocation.
            assert_eq!(unsafe { q.read() }, 0xAB);
            let grown = Layout::from_size_align(5000, align).unwrap();
            // SAFETY: `q` is the block of `grown`.
            unsafe { a.dealloc(q, grown) };
        }
    }

    fn resident_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn released_pages_leave_the_resident_set() {
        // 32 MiB in 8 KiB blocks, written so that they are resident, then freed: mimalloc
        // keeps the freed pages until its purge delay has passed and it is entered again.
        let a = Mimalloc;
        let layout = Layout::from_size_align(8192, 8).unwrap();
        let blocks: Vec<*mut u8> = (0..4096)
            .map(|_| {
                // SAFETY: a non-zero size; freed below with the same layout.
                let p = unsafe { a.alloc(layout) };
                assert!(!p.is_null());
                // SAFETY: `p` has 8192 writable bytes.
                unsafe { p.write_bytes(0x5A, 8192) };
                p
            })
            .collect();
        let held = resident_kib();
        for p in blocks {
            // SAFETY: allocated above with this layout.
            unsafe { a.dealloc(p, layout) };
        }
        release_free_pages();
        let after = resident_kib();
        assert!(
            after + 24 * 1024 < held,
            "resident {held} KiB with the blocks, {after} KiB after freeing and trimming"
        );
    }
}
