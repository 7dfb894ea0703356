//! A seeded random sequence for the crate's randomised tests of the health
//! state: xorshift64*, the same numbers on every run for a seed. (The
//! parser's fuzzing keeps a copy of its own: the parser imports nothing of
//! the crate, its tests included.)

/// xorshift64*: tiny, deterministic, good enough to explore inputs.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}
