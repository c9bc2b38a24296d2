//! A bounded set of recently seen ids, to drop redelivered webhooks and repeated events.

use std::collections::{HashSet, VecDeque};

/// Remembers the last `capacity` ids; older ones are forgotten first.
#[derive(Clone, Debug)]
pub struct DedupSet {
    capacity: usize,
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl DedupSet {
    /// A set remembering up to `capacity` ids (at least 1). Nothing is allocated up front:
    /// a provider holds one set per session, and most sessions see a few dozen ids.
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), order: VecDeque::new(), seen: HashSet::new() }
    }

    /// Records `id`; `true` if it was new, `false` if it is a repeat.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.order.push_back(id.to_owned());
        self.seen.insert(id.to_owned());
        true
    }

    /// Forgets `id` (a delivery that could not be handed on, so its redelivery must pass).
    pub fn remove(&mut self, id: &str) -> bool {
        if !self.seen.remove(id) {
            return false;
        }
        if let Some(at) = self.order.iter().position(|x| x == id) {
            self.order.remove(at);
        }
        true
    }

    /// Whether `id` was seen (and is still remembered).
    pub fn contains(&self, id: &str) -> bool {
        self.seen.contains(id)
    }

    /// The remembered ids, oldest first (for snapshots).
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

impl Default for DedupSet {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl<S: AsRef<str>> Extend<S> for DedupSet {
    fn extend<I: IntoIterator<Item = S>>(&mut self, iter: I) {
        for id in iter {
            self.insert(id.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_reported_and_the_oldest_forgotten() {
        let mut set = DedupSet::new(2);
        assert!(set.insert("a"));
        assert!(!set.insert("a"));
        assert!(set.insert("b"));
        assert!(set.insert("c"));
        assert!(!set.contains("a"));
        assert!(set.insert("a"));
        assert_eq!(set.ids().collect::<Vec<_>>(), ["c", "a"]);
        assert!(set.remove("c"));
        assert!(!set.contains("c"));
        assert!(set.insert("c"), "a forgotten id is new again");
        assert!(!set.remove("zzz"));
    }
}
