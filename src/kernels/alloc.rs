//! The program's memory allocator: the system's, with every block of 4 KiB or more starting on
//! a cache line.
//!
//! glibc puts a 16-byte header in front of large blocks, so the parameter buffer, the optimizer
//! state and the gradients start 16 bytes into a cache line. Then three of every four 64-byte
//! vector loads and stores of the element-wise passes straddle two lines, and the boundaries
//! where threads split a pass (multiples of 16 floats, [`super::pool::even_part`]) fall inside a
//! line that both threads write. Aligned, neither happens.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks at least this large are aligned to [`CACHE_LINE`].
const ALIGNED_FROM: usize = 4096;
/// Bytes per cache line on the CPUs we run on (x86-64, and most AArch64 cores).
pub const CACHE_LINE: usize = 64;

/// The system allocator, aligning large blocks to a cache line (install it with
/// `#[global_allocator]`).
pub struct CacheLineAllocator;

/// The layout the system allocator is asked for: a function of the requested layout only, so
/// `dealloc` and `realloc` name the same layout `alloc` used.
fn system_layout(layout: Layout) -> Layout {
    if layout.size() >= ALIGNED_FROM && layout.align() < CACHE_LINE {
        // A power of two at least as large as the old alignment: always a valid layout.
        Layout::from_size_align(layout.size(), CACHE_LINE).unwrap_or(layout)
    } else {
        layout
    }
}

// SAFETY: every method forwards to the system allocator with `system_layout(layout)`, which
// keeps the size and only raises the alignment; the same function of the caller's layout is used
// to free and to reallocate, so the system allocator always sees the layout it allocated with.
unsafe impl GlobalAlloc for CacheLineAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(system_layout(layout)) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc_zeroed(system_layout(layout)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, system_layout(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = system_layout(layout);
        let Ok(requested) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        let new = system_layout(requested);
        if old.align() == new.align() {
            return unsafe { System.realloc(ptr, old, new_size) };
        }
        // Crossing the size threshold changes the alignment: move the block by hand.
        let moved = unsafe { System.alloc(new) };
        if !moved.is_null() {
            let kept = layout.size().min(new_size);
            // SAFETY: both blocks are live, at least `kept` bytes long, and distinct.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, moved, kept);
                System.dealloc(ptr, old);
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_start_on_a_cache_line_and_survive_growing_and_shrinking() {
        let allocator = CacheLineAllocator;
        for size in [4096, 101_770 * 4, 1 << 20] {
            let layout = Layout::from_size_align(size, 4).expect("valid layout");
            // SAFETY: a non-zero size; the block is freed with the layout it was made with.
            unsafe {
                let block = allocator.alloc(layout);
                assert!(!block.is_null());
                assert_eq!(block as usize % CACHE_LINE, 0, "{size} bytes");
                block.write_bytes(7, size);
                let grown = allocator.realloc(block, layout, size * 2);
                assert_eq!(grown as usize % CACHE_LINE, 0);
                assert_eq!(*grown.add(size - 1), 7);
                let small = allocator.realloc(
                    grown,
                    Layout::from_size_align(size * 2, 4).expect("valid"),
                    100,
                );
                assert_eq!(*small.add(99), 7);
                allocator.dealloc(small, Layout::from_size_align(100, 4).expect("valid"));
            }
        }
    }
}
