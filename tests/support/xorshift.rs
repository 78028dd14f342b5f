//! xorshift64: a tiny deterministic PRNG for randomised stories. A fixed
//! seed makes a failing random case replay exactly. Shared by the sans-IO
//! test files with `#[path = "support/xorshift.rs"] mod xorshift;`.

/// The generator; its state is the seed (never 0).
pub struct XorShift(pub u64);

#[allow(dead_code)]
impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// The same, for `u64` ranges (times, deadlines).
    pub fn below_u64(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
