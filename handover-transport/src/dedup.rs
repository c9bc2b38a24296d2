//! A set of seen ids, to drop redelivered webhooks and repeated events.

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Remembers the last `capacity` ids; older ones are forgotten first.
///
/// It serializes as the list of ids, oldest first, and deserializes into an
/// [`unbounded`](Self::unbounded) set: a session keeps what it saw in its snapshot, for as
/// long as it lives.
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

    /// A set that forgets nothing (a session's ids, which live as long as the session).
    pub fn unbounded() -> Self {
        Self::new(usize::MAX)
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

impl PartialEq for DedupSet {
    fn eq(&self, other: &Self) -> bool {
        self.order == other.order
    }
}

impl Serialize for DedupSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(&self.order)
    }
}

impl<'de> Deserialize<'de> for DedupSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ids = Vec::<String>::deserialize(deserializer)?;
        let mut set = Self::unbounded();
        set.extend(ids);
        Ok(set)
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

    #[test]
    fn it_serializes_as_its_ids_and_comes_back_unbounded() {
        let mut set = DedupSet::new(2);
        set.extend(["a", "b"]);
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, r#"["a","b"]"#);
        let mut back: DedupSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, set);
        back.extend(["c", "d", "e"]);
        assert!(back.contains("a"), "a deserialized set forgets nothing");
    }
}
