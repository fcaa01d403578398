//! The variables in scope while a stage is evaluated: the image's ENV and the declared
//! ARGs. Every lookup and update takes constant time, so a stage with hundreds of
//! thousands of ENV or ARG instructions plans in linear time, and the environment's size
//! is kept as it changes (for [`super::limits::MAX_ENVIRONMENT`]).

use std::collections::HashMap;

use super::StageImage;

/// `NAME=value` bytes.
fn entry_len(name: &str, value: &str) -> usize {
    name.len() + 1 + value.len()
}

/// Declared ARGs in declaration order; declaring one again moves it to the end, as docker
/// does. Removed entries leave a hole that is compacted away once holes dominate.
#[derive(Debug, Clone, Default)]
pub(crate) struct ArgList {
    slots: Vec<Option<(String, Option<String>)>>,
    index: HashMap<String, usize>,
    /// `NAME=value` bytes of the ARGs with values.
    bytes: usize,
}

impl ArgList {
    /// `Some(value)` when `name` is declared (`Some(None)`: declared without a value).
    pub(crate) fn get(&self, name: &str) -> Option<Option<&str>> {
        let i = *self.index.get(name)?;
        self.slots[i].as_ref().map(|(_, v)| v.as_deref())
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Declares `name` (again), at the end of the order.
    pub(crate) fn declare(&mut self, name: String, value: Option<String>) {
        if let Some(i) = self.index.remove(&name)
            && let Some((k, v)) = self.slots[i].take()
            && let Some(v) = v
        {
            self.bytes -= entry_len(&k, &v);
        }
        if let Some(v) = &value {
            self.bytes += entry_len(&name, v);
        }
        self.index.insert(name.clone(), self.slots.len());
        self.slots.push(Some((name, value)));
        if self.slots.len() > 2 * self.index.len() + 16 {
            self.slots.retain(Option::is_some);
            for (i, (k, _)) in self.slots.iter().flatten().enumerate() {
                self.index.insert(k.clone(), i);
            }
        }
    }

    /// The declared ARGs in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.slots
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
    }

    /// `NAME=value` bytes of the ARGs with values.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn into_vec(self) -> Vec<(String, Option<String>)> {
        self.slots.into_iter().flatten().collect()
    }
}

/// The scope of one stage being evaluated.
pub(crate) struct Scope {
    pub(crate) image: StageImage,
    /// Where each ENV name is in `image.config.env`: its first entry, as
    /// [`super::ImageConfig::env_get`] finds it.
    env_index: HashMap<String, usize>,
    /// `NAME=value` bytes of `image.config.env`.
    env_bytes: usize,
    /// Declared ARGs with values.
    pub(crate) args: ArgList,
    pub(crate) cmd_set: bool,
}

fn split_entry(kv: &str) -> (&str, &str) {
    kv.split_once('=').unwrap_or((kv, ""))
}

impl Scope {
    /// The scope of a stage starting from `image` (its base's config and history).
    pub(crate) fn new(image: StageImage) -> Self {
        let mut env_index = HashMap::with_capacity(image.config.env.len());
        let mut env_bytes = 0;
        for (i, kv) in image.config.env.iter().enumerate() {
            env_index.entry(split_entry(kv).0.to_owned()).or_insert(i);
            env_bytes += kv.len();
        }
        Scope {
            image,
            env_index,
            env_bytes,
            args: ArgList::default(),
            cmd_set: false,
        }
    }

    /// The value of ENV `name`.
    pub(crate) fn env_get(&self, name: &str) -> Option<&str> {
        let i = *self.env_index.get(name)?;
        Some(split_entry(&self.image.config.env[i]).1)
    }

    /// Sets ENV `name=value`, replacing an earlier value in place.
    pub(crate) fn env_set(&mut self, name: &str, value: &str) {
        let entry = format!("{name}={value}");
        self.env_bytes += entry.len();
        let env = &mut self.image.config.env;
        match self.env_index.get(name) {
            Some(&i) => {
                self.env_bytes -= env[i].len();
                env[i] = entry;
            }
            None => {
                self.env_index.insert(name.to_owned(), env.len());
                env.push(entry);
            }
        }
    }

    /// A variable as instructions see it: ENV wins over ARG; an ARG declared without a
    /// value is unset.
    pub(crate) fn lookup(&self, name: &str) -> Option<&str> {
        match self.env_get(name) {
            Some(v) => Some(v),
            None => self.args.get(name).flatten(),
        }
    }

    /// The environment's size: ENV entries and ARGs with values, in bytes.
    pub(crate) fn environment_size(&self) -> usize {
        self.env_bytes + self.args.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redeclared_args_move_to_the_end_and_sizes_follow() {
        let mut a = ArgList::default();
        a.declare("A".into(), Some("1".into()));
        a.declare("B".into(), None);
        a.declare("A".into(), Some("22".into()));
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            [("B", None), ("A", Some("22"))]
        );
        assert_eq!(a.bytes(), "A=22".len());
        assert_eq!(a.get("B"), Some(None));
        assert_eq!(a.get("C"), None);
        // Many redeclarations compact the holes and keep the order.
        for i in 0..1000 {
            a.declare(format!("K{}", i % 3), Some(i.to_string()));
        }
        let names: Vec<&str> = a.iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["B", "A", "K1", "K2", "K0"]);
        assert_eq!(a.get("K0"), Some(Some("999")));
        assert!(a.slots.len() <= 2 * a.index.len() + 16);
        assert_eq!(a.into_vec().len(), 5);
    }

    #[test]
    fn env_updates_in_place_and_env_wins_over_args() {
        let mut image = StageImage::default();
        image.config.env = vec!["PATH=/bin".into(), "X=1".into(), "X=2".into()];
        let mut s = Scope::new(image);
        assert_eq!(
            s.env_get("X"),
            Some("1"),
            "the first entry, as env_get finds it"
        );
        s.env_set("X", "33");
        s.env_set("NEW", "v");
        assert_eq!(s.image.config.env, ["PATH=/bin", "X=33", "X=2", "NEW=v"]);
        s.args.declare("NEW".into(), Some("arg".into()));
        s.args.declare("ONLY_ARG".into(), Some("a".into()));
        assert_eq!(s.lookup("NEW"), Some("v"));
        assert_eq!(s.lookup("ONLY_ARG"), Some("a"));
        let env: usize = s.image.config.env.iter().map(String::len).sum();
        assert_eq!(
            s.environment_size(),
            env + "NEW=arg".len() + "ONLY_ARG=a".len()
        );
    }
}
