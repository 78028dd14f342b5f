//! A hashed timer wheel: every timeout in the proxy, in one structure.
//!
//! A proxy with ten thousand connections has tens of thousands of deadlines
//! (header, read, write, idle...). Keeping them sorted would cost O(log n)
//! per insert, and a read timeout moves on every read. The wheel instead
//! drops each timer into the slot `deadline / tick % slots`, like hands on a
//! clock: insert and cancel are O(1) (a slab entry in a doubly linked list),
//! and expiring visits only the slots the clock hand passed. A deadline more
//! than one revolution away waits in its slot until its turn comes round.
//!
//! Sans-IO: time is a number of milliseconds the caller passes in. Nothing
//! here reads a clock, so tests (and a learner in a debugger) control time.
//!
//! [`TimerWheel::next_deadline`] says when the earliest timer is due, so the
//! reactor sleeps exactly that long: an idle proxy makes no syscalls at all,
//! rather than waking every tick to find nothing to do.
//!
//! Where it sits: the reactor owns one wheel; each connection keeps at most
//! one timer in it, for its earliest deadline (see `Reactor::arm_timer`).
//!
//! Lesson: `lessons/10-timers`.

use std::cell::Cell;

use slab::Slab;

/// Names one timer, for `cancel`. Carries a generation so a handle kept
/// after its timer fired can never cancel the timer that reused its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerId {
    key: usize,
    generation: u64,
}

struct Entry<T> {
    deadline_ms: u64,
    generation: u64,
    value: T,
    slot: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// The wheel; `T` is what a timer carries (the reactor uses `ConnId`).
pub struct TimerWheel<T> {
    tick_ms: u64,
    /// Head of each slot's list (slot count is a power of two).
    heads: Vec<Option<usize>>,
    /// One bit per slot: is it non-empty? Finding the next busy slot then
    /// costs a few word scans, not a walk over empty slots.
    occupied: Vec<u64>,
    entries: Slab<Entry<T>>,
    next_generation: u64,
    /// Every tick before this one has been expired.
    current_tick: u64,
    /// The answer of the last `next_deadline`, while still true. The loop
    /// asks before every `poll`, and in a steady stream of requests nothing
    /// it depends on changes between asks (deadlines that move later do
    /// not touch the wheel), so the walk over the slots is rarely needed.
    next_cache: Cell<Option<Option<u64>>>,
}

impl<T> TimerWheel<T> {
    /// A wheel of `slots` slots (rounded up to a power of two, at least 64),
    /// each `tick_ms` wide, with the clock hand at `now_ms`.
    pub fn new(tick_ms: u64, slots: usize, now_ms: u64) -> TimerWheel<T> {
        let tick_ms = tick_ms.max(1);
        let slots = slots.max(64).next_power_of_two();
        TimerWheel {
            tick_ms,
            heads: vec![None; slots],
            occupied: vec![0; slots / 64],
            entries: Slab::new(),
            next_generation: 0,
            current_tick: now_ms / tick_ms,
            next_cache: Cell::new(Some(None)),
        }
    }

    /// Timers waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn mask(&self) -> usize {
        self.heads.len() - 1
    }

    /// Add a timer due at `deadline_ms`. A deadline already past fires at
    /// the next `expire`.
    pub fn insert(&mut self, deadline_ms: u64, value: T) -> TimerId {
        let tick = (deadline_ms / self.tick_ms).max(self.current_tick);
        let slot = (tick as usize) & self.mask();
        let generation = self.next_generation;
        self.next_generation += 1;
        let head = self.heads[slot];
        let key = self.entries.insert(Entry {
            deadline_ms,
            generation,
            value,
            slot,
            prev: None,
            next: head,
        });
        if let Some(old_head) = head {
            self.entries[old_head].prev = Some(key);
        }
        self.heads[slot] = Some(key);
        self.occupied[slot / 64] |= 1 << (slot % 64);
        if let Some(next) = self.next_cache.get() {
            // Still exact: the earliest is the old one or this one.
            let earliest = next.map_or(deadline_ms, |n| n.min(deadline_ms));
            self.next_cache.set(Some(Some(earliest)));
        }
        TimerId { key, generation }
    }

    /// Remove a timer before it fires. `None` if it already fired or was
    /// cancelled.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        match self.entries.get(id.key) {
            Some(entry) if entry.generation == id.generation => Some(self.unlink(id.key)),
            _ => None,
        }
    }

    fn unlink(&mut self, key: usize) -> T {
        let entry = self.entries.remove(key);
        if self.next_cache.get() == Some(Some(entry.deadline_ms)) {
            // The earliest may just have gone: find it again when asked.
            self.next_cache.set(None);
        }
        match entry.prev {
            Some(prev) => self.entries[prev].next = entry.next,
            None => self.heads[entry.slot] = entry.next,
        }
        if let Some(next) = entry.next {
            self.entries[next].prev = entry.prev;
        }
        if self.heads[entry.slot].is_none() {
            self.occupied[entry.slot / 64] &= !(1 << (entry.slot % 64));
        }
        entry.value
    }

    /// Move the clock hand to `now_ms` and hand every timer due by then to
    /// `fired`, earliest slot first.
    pub fn expire(&mut self, now_ms: u64, mut fired: impl FnMut(T)) {
        let now_tick = now_ms / self.tick_ms;
        if now_tick < self.current_tick {
            return;
        }
        // Past a whole revolution every slot has been passed once; visiting
        // each slot once more would find nothing new.
        let ticks = (now_tick - self.current_tick + 1).min(self.heads.len() as u64);
        for step in 0..ticks {
            let slot = ((self.current_tick + step) as usize) & self.mask();
            let mut cursor = self.heads[slot];
            while let Some(key) = cursor {
                let entry = &self.entries[key];
                cursor = entry.next;
                // Entries here from a later revolution stay for their turn.
                if entry.deadline_ms <= now_ms {
                    fired(self.unlink(key));
                }
            }
        }
        // The current slot is revisited next time: a timer inserted for a
        // later millisecond of this same tick still lands in it.
        self.current_tick = now_tick;
    }

    /// When the earliest timer is due, or `None` with no timers: how long
    /// the reactor may sleep.
    ///
    /// Walks busy slots from the clock hand on. The first slot holding a
    /// timer of the current revolution holds the earliest; slots holding
    /// only later revolutions are skipped. With deadlines longer than one
    /// revolution (the proxy's are: 15 s and more against about 4 s) a walk
    /// may visit every busy slot, which is why the answer is remembered
    /// until the earliest timer is cancelled or fires (`next_cache`).
    pub fn next_deadline(&self) -> Option<u64> {
        if let Some(known) = self.next_cache.get() {
            return known;
        }
        let next = self.find_next_deadline();
        self.next_cache.set(Some(next));
        next
    }

    fn find_next_deadline(&self) -> Option<u64> {
        if self.entries.is_empty() {
            return None;
        }
        let slots = self.heads.len();
        let revolution_end = (self.current_tick + slots as u64) * self.tick_ms;
        let mut earliest_later: Option<u64> = None;
        let mut offset = 0;
        while offset < slots {
            let Some(found) = self.next_busy_slot(offset) else {
                break;
            };
            let slot = (self.current_tick as usize + found) & self.mask();
            let mut best: Option<u64> = None;
            let mut cursor = self.heads[slot];
            while let Some(key) = cursor {
                let entry = &self.entries[key];
                if entry.deadline_ms < revolution_end {
                    best = Some(best.map_or(entry.deadline_ms, |b| b.min(entry.deadline_ms)));
                } else {
                    earliest_later = Some(
                        earliest_later.map_or(entry.deadline_ms, |b| b.min(entry.deadline_ms)),
                    );
                }
                cursor = entry.next;
            }
            if best.is_some() {
                return best;
            }
            offset = found + 1;
        }
        earliest_later
    }

    /// Offset (from the clock hand) of the first busy slot at `from` or
    /// later, without wrapping past a whole revolution.
    fn next_busy_slot(&self, from: usize) -> Option<usize> {
        let slots = self.heads.len();
        let base = self.current_tick as usize & self.mask();
        let mut offset = from;
        while offset < slots {
            let slot = (base + offset) & self.mask();
            let word = self.occupied[slot / 64] >> (slot % 64);
            if word != 0 {
                let skip = word.trailing_zeros() as usize;
                // Stay inside this word; the next iteration handles the wrap.
                return Some(offset + skip).filter(|&o| o < slots);
            }
            offset += 64 - slot % 64;
        }
        None
    }
}
