//! The program's memory allocator: the system's, with every block of 4 KiB or more starting on
//! a cache line.
//!
//! glibc puts a 16-byte header in front of large blocks, so the parameter buffer, the optimizer
//! state and the gradients start 16 bytes into a cache line. Then three of every four 64-byte
//! vector loads and stores of the element-wise passes straddle two lines, and the boundaries
//! where threads split a pass (multiples of 16 floats, [`super::pool::even_part`]) fall inside a
//! line that both threads write. Aligned, neither happens.
//!
//! Also [`bytes_with_huge_pages`], for the large byte buffers read at random (the dataset's
//! images).

use std::alloc::{GlobalAlloc, Layout, System};
use std::mem::MaybeUninit;

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

/// An empty vector with room for `capacity` bytes, whose memory the OS is asked to back with
/// huge pages (Linux's transparent huge pages, where enabled; elsewhere a plain vector).
///
/// For the dataset's images: a step reads 32 of them at random from tens of megabytes, and with
/// 4 KiB pages nearly every image also misses the TLB, which a prefetch does not hide. One
/// 2 MiB page covers 2,600 images. The advice must come before the bytes are written: pages
/// already there are only merged later, if ever.
pub fn bytes_with_huge_pages(capacity: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(capacity);
    advise_huge_pages(bytes.spare_capacity_mut());
    bytes
}

/// Asks for huge pages on the whole 2 MiB pages inside `region` (the edges keep small ones).
fn advise_huge_pages(region: &mut [MaybeUninit<u8>]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE_PAGE: usize = 2 << 20;
        let start = region.as_mut_ptr() as usize;
        let first = start.next_multiple_of(HUGE_PAGE);
        let end = (start + region.len()) / HUGE_PAGE * HUGE_PAGE;
        if end > first {
            // SAFETY: the range lies inside `region`, which we hold mutably, and starts on a page
            // boundary; MADV_HUGEPAGE changes only how the kernel backs those pages, never their
            // contents, and a refusal (huge pages disabled) leaves ordinary pages.
            unsafe {
                libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = region;
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

    /// The advice reaches the kernel: the mapping holding the buffer's middle carries the huge
    /// page flag (`hg` in /proc/self/smaps). Only where the system leaves huge pages to madvise;
    /// x86-64 only, since qemu-user, which runs the AArch64 tests, ignores madvise.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn image_buffers_ask_the_kernel_for_huge_pages() {
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
        if !mode.is_ok_and(|mode| mode.contains("[madvise]")) {
            return;
        }
        let mut bytes = bytes_with_huge_pages(16 << 20);
        let middle = bytes.spare_capacity_mut()[8 << 20..].as_ptr() as usize;
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps");
        let mut inside = false;
        let mut flags = None;
        for line in smaps.lines() {
            let range = line
                .split_whitespace()
                .next()
                .and_then(|r| r.split_once('-'));
            if let Some((start, end)) = range {
                let parse = |hex| usize::from_str_radix(hex, 16);
                if let (Ok(start), Ok(end)) = (parse(start), parse(end)) {
                    inside = (start..end).contains(&middle);
                    continue;
                }
            }
            if inside && line.starts_with("VmFlags:") {
                flags = Some(line.to_string());
            }
        }
        let flags = flags.expect("the buffer's mapping is in /proc/self/smaps");
        assert!(flags.split_whitespace().any(|flag| flag == "hg"), "{flags}");
    }
}
