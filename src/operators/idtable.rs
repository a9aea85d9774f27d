//! The dedup operator's id set: an open-addressing table of 128-bit id hashes, with linear
//! probing, built for one access pattern.
//!
//! Nearly every lookup is for an id never seen before, in a table far larger than the cache, so
//! each lookup is a cache miss. A general-purpose map cannot be told where a key will land
//! before it is looked up; this table can, so the dedup operator prefetches the slots of the
//! next few ids of a batch while it decides the current one. Linear probing keeps a probe
//! within one or two adjacent cache lines, and lets expired ids be removed in one sequential
//! pass without tombstones.
//!
//! Expired ids are not swept as soon as they expire: a sweep reads the whole table, so it runs
//! when the table is full (and an insert may reuse an expired slot it passes). A sweep then
//! frees at least a quarter of the slots, which keeps its cost to a few slots per insert.
//!
//! Growing does not rehash at once: a table of a million ids takes a quarter of a second to
//! rehash, and every event behind the worker would wait for it (the latency benchmark showed
//! exactly those stalls at each doubling). The old array stays, read-only, and each insert
//! moves a few of its slots into the new one; until an id has moved it is found in the old.
//!
//! A table grows by half, not by doubling. With 24-byte slots and growth at three quarters full,
//! a table of live ids then holds 32 to 48 bytes per id, where doubling would leave it anywhere
//! from 32 to 64. Sizes that are not powers of two need the index by multiplication (below)
//! rather than by mask, which costs one multiply on a lookup that waits for memory anyway.

/// One slot: the id hash as two words (8-byte alignment keeps a slot at 24 bytes) and a value.
/// All three zero means empty.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
struct Slot {
    k0: u64,
    k1: u64,
    value: u64,
}

impl Slot {
    fn is_empty(&self) -> bool {
        self.k0 == 0 && self.k1 == 0
    }
}

/// A slot array in an anonymous mapping of its own rather than from the allocator. A table is
/// the largest allocation of the process and is replaced whole when it grows or shrinks; the
/// allocator keeps freed pages for a second (see `tune_allocator` in main.rs), which would keep
/// a replaced array resident. Unmapping returns it at once, and fresh pages read as zeros,
/// which is what empty slots are, so an array costs memory only as its slots are written.
struct Slots {
    ptr: std::ptr::NonNull<Slot>,
    len: usize,
}

// SAFETY: `Slots` owns its mapping outright, like a `Vec<Slot>`, and `Slot` is plain data.
#[allow(unsafe_code)]
unsafe impl Send for Slots {}
// SAFETY: shared access only reads, through `&[Slot]`.
#[allow(unsafe_code)]
unsafe impl Sync for Slots {}

impl Slots {
    /// No slots, and no mapping.
    fn none() -> Slots {
        Slots {
            ptr: std::ptr::NonNull::dangling(),
            len: 0,
        }
    }

    /// `len` empty slots.
    #[allow(unsafe_code)]
    fn empty(len: usize) -> Slots {
        if len == 0 {
            return Slots::none();
        }
        let layout = std::alloc::Layout::array::<Slot>(len).expect("a table fits in memory");
        // SAFETY: a fresh private anonymous mapping aliases nothing; the kernel picks the
        // address and returns it page-aligned, which satisfies `Slot`'s 8-byte alignment.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        let ptr = match std::ptr::NonNull::new(p.cast::<Slot>()) {
            Some(ptr) if p != libc::MAP_FAILED => ptr,
            _ => std::alloc::handle_alloc_error(layout),
        };
        if layout.size() >= HUGE_PAGE {
            // Ask for transparent huge pages (where the kernel has them in `madvise` mode).
            // Lookups land on random slots, so with 4 KiB pages nearly every one also misses
            // the TLB. And the first touch of a page is a probe, a read, which maps the shared
            // zero page; the insert that follows then replaces it, and that flushes the TLB of
            // every core running the process, by interrupt. Both happen 512 times less often
            // with 2 MiB pages. Only a hint: without them the table works as before.
            // SAFETY: the range is exactly the mapping made above.
            unsafe { libc::madvise(p, layout.size(), libc::MADV_HUGEPAGE) };
        }
        Slots { ptr, len }
    }
}

/// The size of a transparent huge page on x86_64 and most other targets.
const HUGE_PAGE: usize = 2 << 20;

impl std::ops::Deref for Slots {
    type Target = [Slot];
    #[allow(unsafe_code)]
    fn deref(&self) -> &[Slot] {
        // SAFETY: `ptr` is valid for `len` slots (or dangling with `len` 0), zero-initialised
        // by the kernel, and all-zero is a valid `Slot`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for Slots {
    #[allow(unsafe_code)]
    fn deref_mut(&mut self) -> &mut [Slot] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Slots {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: the mapping was made in `empty` with this size and is not used again.
            unsafe {
                libc::munmap(
                    self.ptr.as_ptr().cast(),
                    self.len * std::mem::size_of::<Slot>(),
                )
            };
        }
    }
}

/// Fewest slots a table has, so small tables do not resize on every few inserts.
const MIN_SLOTS: usize = 1024;

/// Old slots moved per insert while growing. The new array, half as large again as the old,
/// takes a quarter of its size (3/8 of the old one's) in inserts before it is full again, so 3
/// would do; 8 ends the move well before that.
const MOVE_PER_INSERT: usize = 8;

/// Keys are uniform hashes, so they are their own index: the low word scaled to the array's
/// length. The high word is also what the exchange routes by (fixing its low bits per worker),
/// so the index comes from the low word.
fn home(k1: u64, len: usize) -> usize {
    ((u128::from(k1) * len as u128) >> 64) as usize
}

/// The slot after `i`, wrapping at the end of the array.
fn next(i: usize, len: usize) -> usize {
    if i + 1 == len {
        0
    } else {
        i + 1
    }
}

/// The all-zero key marks an empty slot, so that one key is stored as `(0, 1)`. Two ids meet
/// there only if their hashes are those two values, which is as likely as any other 128-bit
/// collision.
fn key(hash: u128) -> (u64, u64) {
    let (k0, k1) = ((hash >> 64) as u64, hash as u64);
    if k0 == 0 && k1 == 0 {
        (0, 1)
    } else {
        (k0, k1)
    }
}

/// Asks the CPU to start loading slot `i`'s cache line.
#[inline]
fn prefetch_slot(slots: &[Slot], i: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let p = slots[i..].as_ptr().cast::<i8>();
        // SAFETY: a prefetch is only a hint; it never faults and never reads into the
        // program, and `p` points inside the slot array anyway.
        #[allow(unsafe_code)]
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p)
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (slots, i);
}

/// A set of 128-bit id hashes, each with a 64-bit value.
pub struct IdTable {
    slots: Slots,
    /// Ids held, in either array.
    len: usize,
    /// The array being moved into `slots` after a growth (empty when none is), never written:
    /// an id not yet moved is found here by its usual probe.
    old: Slots,
    /// Slots of `old` before this one have been moved.
    moved: usize,
}

impl Default for IdTable {
    fn default() -> Self {
        IdTable::new()
    }
}

impl IdTable {
    /// An empty table.
    pub fn new() -> IdTable {
        IdTable {
            slots: Slots::empty(MIN_SLOTS),
            len: 0,
            old: Slots::none(),
            moved: 0,
        }
    }

    /// Ids held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no id is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the slot arrays.
    pub fn bytes(&self) -> usize {
        (self.slots.len() + self.old.len()) * std::mem::size_of::<Slot>()
    }

    /// Asks the CPU to start loading the cache line where `hash` would be found, so that a
    /// later [`IdTable::insert`] of it does not wait for memory.
    #[inline]
    pub fn prefetch(&self, hash: u128) {
        let k1 = key(hash).1;
        prefetch_slot(&self.slots, home(k1, self.slots.len()));
        if !self.old.is_empty() {
            prefetch_slot(&self.old, home(k1, self.old.len()));
        }
    }

    /// Inserts `hash` with `value` if it is absent and returns `None`; if present, leaves the
    /// table unchanged and returns the value stored with it. `expired` says which stored values
    /// may be forgotten to make room.
    pub fn insert(&mut self, hash: u128, value: u64, expired: impl Fn(u64) -> bool) -> Option<u64> {
        if !self.old.is_empty() {
            self.move_old(MOVE_PER_INSERT);
        }
        // Make room at three quarters full: beyond that, linear-probing runs get long. Sweep
        // first; grow only if the live ids still fill half the table.
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.retain(|v| !expired(v));
            if self.len * 2 > self.slots.len() {
                let bigger = Slots::empty(self.slots.len() + self.slots.len() / 2);
                self.old = std::mem::replace(&mut self.slots, bigger);
                self.moved = 0;
            }
        }
        let (k0, k1) = key(hash);
        let len = self.slots.len();
        let mut i = home(k1, len);
        let mut reuse = None;
        loop {
            let s = &self.slots[i];
            if s.k0 == k0 && s.k1 == k1 {
                return Some(s.value);
            }
            if s.is_empty() {
                if let Some(v) = self.find_old(k0, k1) {
                    return Some(v);
                }
                // Absent. An expired slot on the way is still on this id's probe path.
                match reuse {
                    Some(r) => self.slots[r] = Slot { k0, k1, value },
                    None => {
                        self.slots[i] = Slot { k0, k1, value };
                        self.len += 1;
                    }
                }
                return None;
            }
            if reuse.is_none() && expired(s.value) {
                reuse = Some(i);
            }
            i = next(i, len);
        }
    }

    /// The value of an id not yet moved out of the old array.
    fn find_old(&self, k0: u64, k1: u64) -> Option<u64> {
        if self.old.is_empty() {
            return None;
        }
        let len = self.old.len();
        let mut i = home(k1, len);
        loop {
            let s = &self.old[i];
            if s.k0 == k0 && s.k1 == k1 {
                return Some(s.value);
            }
            if s.is_empty() {
                return None;
            }
            i = next(i, len);
        }
    }

    /// Moves up to `n` more slots of the old array, and drops it once all are moved. An id is
    /// never in both arrays: inserts look in the old one before adding to the new.
    fn move_old(&mut self, n: usize) {
        let end = (self.moved + n).min(self.old.len());
        for i in self.moved..end {
            let s = self.old[i];
            if !s.is_empty() {
                IdTable::place(&mut self.slots, s);
            }
        }
        self.moved = end;
        if end == self.old.len() {
            self.old = Slots::none();
        }
    }

    /// Places a slot known to be absent at the first empty slot from its home.
    fn place(slots: &mut [Slot], s: Slot) {
        let len = slots.len();
        let mut i = home(s.k1, len);
        while !slots[i].is_empty() {
            i = next(i, len);
        }
        slots[i] = s;
    }

    fn resize(&mut self, slots: usize) {
        let mut fresh = Slots::empty(slots.max(MIN_SLOTS));
        for s in self.slots.iter().filter(|s| !s.is_empty()) {
            IdTable::place(&mut fresh, *s);
        }
        self.slots = fresh;
    }

    /// Keeps the ids whose value passes `keep`, in one pass over the slots.
    ///
    /// Emptying a slot can cut a probe run, leaving later ids of the run unreachable from their
    /// home. The pass starts just after an empty slot (so no run wraps past its start), and
    /// every live id that follows a removal within the same run is placed again; it can only
    /// move back, into slots the pass has already visited.
    pub fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        // A sweep sees one array: whatever is left of a growth is moved first.
        self.move_old(self.old.len());
        let Some(start) = self.slots.iter().position(Slot::is_empty) else {
            return;
        };
        let len = self.slots.len();
        let (mut i, mut cut) = (start, false);
        for _ in 0..len {
            i = next(i, len);
            let s = self.slots[i];
            if s.is_empty() {
                cut = false;
            } else if !keep(s.value) {
                self.slots[i] = Slot::default();
                self.len -= 1;
                cut = true;
            } else if cut {
                self.slots[i] = Slot::default();
                IdTable::place(&mut self.slots, s);
            }
        }
        // Give memory back after a burst, but keep room to grow into without resizing.
        let fit = (self.len * 2).max(MIN_SLOTS);
        if self.slots.len() > 4 * fit {
            self.resize(fit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::SplitMix;
    use std::collections::HashMap;

    /// Against a `HashMap` on random inserts, repeats and sweeps, with hashes squeezed into a
    /// few homes so that runs are long and wrap around the end of the array.
    #[test]
    fn behaves_like_a_map_through_inserts_and_sweeps() {
        let mut rng = SplitMix(11);
        let mut table = IdTable::new();
        let mut model: HashMap<u128, u64> = HashMap::new();
        let mut seen: Vec<u128> = Vec::new();
        for round in 0..24u64 {
            for _ in 0..400 {
                let hash = if !seen.is_empty() && rng.below(5) == 0 {
                    seen[rng.below(seen.len() as u64) as usize]
                } else {
                    // Low word from two small ranges, at the two ends of the array: many ids
                    // share a home, and runs from the last slot wrap around to the first.
                    let low = match rng.below(2) {
                        0 => rng.below(64),
                        _ => u64::MAX - rng.below(64),
                    };
                    let h = (u128::from(rng.next_u64()) << 64) | u128::from(low);
                    seen.push(h);
                    h
                };
                let value = round * 1000 + rng.below(1000);
                let expected = model.get(&hash).copied();
                if expected.is_none() {
                    model.insert(hash, value);
                }
                assert_eq!(table.insert(hash, value, |_| false), expected);
            }
            let cutoff = round.saturating_sub(3) * 1000;
            table.retain(|v| v >= cutoff);
            model.retain(|_, v| *v >= cutoff);
            assert_eq!(table.len(), model.len());
            for h in &seen {
                let present = table.insert(*h, u64::MAX, |_| false);
                assert_eq!(present, model.get(h).copied(), "round {round}");
                if present.is_none() {
                    model.insert(*h, u64::MAX);
                }
            }
            table.retain(|v| v != u64::MAX);
            model.retain(|_, v| *v != u64::MAX);
        }
        table.retain(|_| false);
        assert!(table.is_empty());
        assert_eq!(table.bytes(), MIN_SLOTS * 24);
    }

    /// Inserts that find the table full sweep what has expired before they grow it, and an
    /// insert may take an expired slot; a live id is never lost either way.
    #[test]
    fn full_tables_drop_expired_ids_before_growing() {
        let mut rng = SplitMix(3);
        let mut t = IdTable::new();
        let mut live: Vec<u128> = Vec::new();
        for gen in 0..20u64 {
            live.clear();
            for _ in 0..250 {
                let h = rng.next_u128();
                assert_eq!(t.insert(h, gen, |v| v + 1 < gen), None);
                live.push(h);
            }
            for h in &live {
                assert_eq!(t.insert(*h, 0, |v| v + 1 < gen), Some(gen));
            }
        }
        // Two generations of 250 are live at most, so the table never had to grow.
        assert_eq!(t.bytes(), MIN_SLOTS * 24);
    }

    /// Through several growths, every id stays findable while the old array is being moved,
    /// no id is lost or doubled by the move, and each move ends before the next growth.
    #[test]
    fn growth_moves_ids_a_few_at_a_time_and_loses_none() {
        let mut rng = SplitMix(5);
        let mut t = IdTable::new();
        let mut ids: Vec<u128> = Vec::new();
        let mut growths = 0;
        let mut saw_move = false;
        for n in 0..40_000u64 {
            let h = rng.next_u128();
            let before = t.slots.len();
            assert_eq!(t.insert(h, n, |_| false), None);
            if t.slots.len() > before {
                growths += 1;
                // The old array is still there: the growth did not rehash everything at once.
                assert_eq!(t.old.len(), before);
            }
            saw_move |= !t.old.is_empty();
            ids.push(h);
            if n % 997 == 0 {
                for (v, id) in ids.iter().enumerate() {
                    assert_eq!(t.insert(*id, u64::MAX, |_| false), Some(v as u64));
                }
            }
        }
        assert!(growths >= 5 && saw_move);
        assert_eq!(t.len(), ids.len());
        let live = std::cell::Cell::new(0);
        t.retain(|_| {
            live.set(live.get() + 1);
            true
        });
        assert!(t.old.is_empty());
        assert_eq!(live.get(), ids.len());
    }

    /// Once a growth has finished moving, live ids cost at most 48 bytes each: the table grows
    /// by half when three quarters full (by doubling, this would fail right after each growth).
    #[test]
    fn live_ids_cost_at_most_48_bytes_each() {
        let mut rng = SplitMix(9);
        let mut t = IdTable::new();
        let mut checked = 0;
        for n in 0..300_000u64 {
            let h = rng.next_u128();
            assert_eq!(t.insert(h, n, |_| false), None);
            if t.old.is_empty() && t.len() > MIN_SLOTS {
                assert!(
                    t.bytes() <= 48 * t.len(),
                    "{} bytes, {} ids",
                    t.bytes(),
                    t.len()
                );
                checked += 1;
            }
        }
        assert!(checked > 100_000, "{checked}");
    }

    #[test]
    fn the_zero_hash_is_an_id_like_any_other() {
        let mut t = IdTable::new();
        assert_eq!(t.insert(0, 7, |_| false), None);
        assert_eq!(t.insert(0, 8, |_| false), Some(7));
        assert_eq!(t.len(), 1);
    }
}
