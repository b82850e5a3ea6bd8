//! A session's permissions as interned ids: sorted for the check, plus the stored order.
//!
//! The sorted ids live in the session's hot record (what a check reads), the stored order of a
//! small set in its cold record (only `get_permissions` reads it):
//! - up to [`INLINE`] permissions are inline, a [`PermSet`] of 24 bytes with no allocation and no
//!   extra cache miss on a check; their stored order is an [`Order`], one byte per stored position
//!   holding the index into the sorted ids;
//! - larger sets are one boxed `[u32]` (one extra cache miss on a check): the `n` sorted ids, then
//!   the stored order as `u16` indices into them, two per `u32` word (`n + ceil(n / 2)` words; `n`
//!   is recovered as `2 * len / 3`). `u16` suffices because a list holds at most 4,096 permissions.

/// Sets up to this size are stored inline (five ids keep the hot record at one cache line).
pub(crate) const INLINE: usize = 5;

/// The stored order of an inline set: `order[i]` is the index in the sorted ids of the `i`th
/// stored permission. Unused (zeroes) for a boxed set, which carries its own order.
pub(crate) type Order = [u8; INLINE];

/// An immutable set of sorted permission ids. See the module docs for the layout.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum PermSet {
    /// `ids[..len]` sorted.
    Small { len: u8, ids: [u32; INLINE] },
    /// `n` sorted ids followed by the packed `u16` stored order.
    Large(Box<[u32]>),
}

impl PermSet {
    /// Builds a set from ids in stored order (distinct, since permission lists are deduplicated),
    /// with the stored order of a small set.
    pub(crate) fn new(stored: &[u32]) -> (Self, Order) {
        let mut by_id: Vec<(u32, usize)> = stored
            .iter()
            .enumerate()
            .map(|(pos, &id)| (id, pos))
            .collect();
        by_id.sort_unstable();
        // rank[pos] = index of the stored permission `pos` in the sorted ids.
        let mut rank = vec![0usize; stored.len()];
        for (sorted_index, &(_, pos)) in by_id.iter().enumerate() {
            rank[pos] = sorted_index;
        }
        if stored.len() <= INLINE {
            let mut ids = [0u32; INLINE];
            let mut order = [0u8; INLINE];
            for (slot, &(id, _)) in ids.iter_mut().zip(&by_id) {
                *slot = id;
            }
            for (slot, &r) in order.iter_mut().zip(&rank) {
                // r < INLINE, so it fits in a byte.
                *slot = u8::try_from(r).unwrap_or(0);
            }
            let len = u8::try_from(stored.len()).unwrap_or(0);
            return (Self::Small { len, ids }, order);
        }
        let n = stored.len();
        let mut words: Vec<u32> = Vec::with_capacity(n + n.div_ceil(2));
        words.extend(by_id.iter().map(|&(id, _)| id));
        for pair in rank.chunks(2) {
            // A permission list holds at most 4,096 entries, so every rank fits in 16 bits.
            let lo = u32::try_from(pair[0]).unwrap_or(0) & 0xffff;
            let hi = pair
                .get(1)
                .map_or(0, |&r| u32::try_from(r).unwrap_or(0) & 0xffff);
            words.push(lo | (hi << 16));
        }
        (Self::Large(words.into_boxed_slice()), [0; INLINE])
    }

    /// The sorted ids.
    fn sorted(&self) -> &[u32] {
        match self {
            Self::Small { len, ids } => &ids[..usize::from(*len)],
            Self::Large(words) => &words[..2 * words.len() / 3],
        }
    }

    /// Whether the set holds `id` (binary search over the sorted ids).
    pub(crate) fn contains(&self, id: u32) -> bool {
        self.sorted().binary_search(&id).is_ok()
    }

    /// The number of permissions.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sorted().len()
    }

    /// The ids in stored order; `order` is the one [`PermSet::new`] returned with this set.
    pub(crate) fn stored_order(&self, order: &Order) -> Vec<u32> {
        match self {
            Self::Small { len, ids } => order[..usize::from(*len)]
                .iter()
                .filter_map(|&r| ids.get(usize::from(r)).copied())
                .collect(),
            Self::Large(words) => {
                let n = 2 * words.len() / 3;
                let (sorted, packed) = words.split_at(n);
                (0..n)
                    .filter_map(|pos| {
                        let word = packed.get(pos / 2)?;
                        let rank = if pos % 2 == 0 {
                            word & 0xffff
                        } else {
                            word >> 16
                        };
                        sorted.get(rank as usize).copied()
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_small_enough_for_the_hot_record() {
        assert_eq!(std::mem::size_of::<PermSet>(), 24);
    }

    #[test]
    fn keeps_stored_order_and_finds_members_at_every_size() {
        for n in [1usize, 2, 4, 5, 6, 7, 8, 9, 100, 4096] {
            // A scrambled but distinct sequence of ids.
            let stored: Vec<u32> = (0..n as u32).map(|i| (i * 7919) % 10_007 + 3).collect();
            let (set, order) = PermSet::new(&stored);
            assert_eq!(set.stored_order(&order), stored, "n={n}");
            assert_eq!(set.len(), n);
            assert!(matches!(set, PermSet::Small { .. }) == (n <= INLINE));
            for &id in &stored {
                assert!(set.contains(id), "n={n} id={id}");
            }
            assert!(!set.contains(0) && !set.contains(1) && !set.contains(u32::MAX));
        }
    }

    #[test]
    fn large_sets_use_n_plus_half_n_words() {
        let stored: Vec<u32> = (0..7).rev().collect();
        let (set, _) = PermSet::new(&stored);
        assert!(matches!(&set, PermSet::Large(words) if words.len() == 7 + 4));
    }
}
