//! The variables in scope while a stage is evaluated: the image's ENV, the declared ARGs,
//! and the environment that steps see. Every lookup and update takes constant time, so a
//! stage with hundreds of thousands of ENV or ARG instructions plans in linear time, and
//! the environment's size is kept as it changes (for [`super::limits::MAX_ENVIRONMENT`]).
//!
//! As in BuildKit, ENV and ARG (with a value) both set the step environment, in the order
//! they come: a later `ARG X=1` after `ENV X=2` is what a following RUN sees and what later
//! instructions expand, while the image config's Env keeps the ENV value. A stage built
//! `FROM` another stage starts with that stage's step environment and build args.

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

/// What a stage hands to the stages built `FROM` it: its step environment and build args.
#[derive(Debug, Clone, Default)]
pub(crate) struct Inherited {
    /// The step environment (every value is `Some`).
    pub(crate) env: ArgList,
    /// The names of the build args declared so far, each once, in the order first
    /// declared (RUN history lists them so).
    pub(crate) build_args: Vec<String>,
}

/// The scope of one stage being evaluated.
pub(crate) struct Scope {
    pub(crate) image: StageImage,
    /// Where each ENV name is in `image.config.env`: its first entry, as
    /// [`super::ImageConfig::env_get`] finds it.
    env_index: HashMap<String, usize>,
    /// `NAME=value` bytes of `image.config.env`.
    env_bytes: usize,
    /// ARGs declared in this stage, with their values.
    pub(crate) args: ArgList,
    /// The environment steps see and instructions expand, in the order of the last
    /// assignment of each name (BuildKit's state environment).
    step_env: ArgList,
    /// Build args declared here or inherited, in first-declared order.
    build_args: Vec<String>,
    build_arg_set: std::collections::HashSet<String>,
    pub(crate) cmd_set: bool,
    /// With an unresolved base config: the names instructions looked up and found unset,
    /// which the base image's ENV may define.
    pub(crate) unresolved: Option<std::cell::RefCell<std::collections::BTreeSet<String>>>,
}

fn split_entry(kv: &str) -> (&str, &str) {
    kv.split_once('=').unwrap_or((kv, ""))
}

impl Scope {
    /// The scope of a stage starting from `image` (its base's config and history).
    pub(crate) fn new(image: StageImage) -> Self {
        let mut step_env = ArgList::default();
        for kv in &image.config.env {
            let (k, v) = split_entry(kv);
            step_env.declare(k.to_owned(), Some(v.to_owned()));
        }
        Self::inherit(
            image,
            Inherited {
                env: step_env,
                build_args: Vec::new(),
            },
        )
    }

    /// The scope of a stage built `FROM` another stage: `image` is that stage's image,
    /// `from` its step environment and build args.
    pub(crate) fn inherit(image: StageImage, from: Inherited) -> Self {
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
            step_env: from.env,
            build_arg_set: from.build_args.iter().cloned().collect(),
            build_args: from.build_args,
            cmd_set: false,
            unresolved: None,
        }
    }

    /// What stages built `FROM` this one start with.
    pub(crate) fn inherited(&self) -> Inherited {
        Inherited {
            env: self.step_env.clone(),
            build_args: self.build_args.clone(),
        }
    }

    /// Declares ARG `name` with its value; a value enters the step environment unless
    /// `env` is false (proxy variables, which steps get apart from it).
    pub(crate) fn declare_arg(&mut self, name: &str, value: Option<String>, env: bool) {
        if env && let Some(v) = &value {
            self.step_env.declare(name.to_owned(), Some(v.clone()));
        }
        if self.build_arg_set.insert(name.to_owned()) {
            self.build_args.push(name.to_owned());
        }
        self.args.declare(name.to_owned(), value);
    }

    /// The step environment as `NAME=value` entries.
    pub(crate) fn step_env(&self) -> Vec<String> {
        self.step_env
            .iter()
            .map(|(k, v)| format!("{k}={}", v.unwrap_or_default()))
            .collect()
    }

    /// The build args as RUN history shows them (`NAME=value`, the value steps see, empty
    /// when there is none), without those `skip` names.
    pub(crate) fn history_args(&self, skip: &dyn Fn(&str) -> bool) -> Vec<String> {
        self.build_args
            .iter()
            .filter(|k| !skip(k))
            .map(|k| format!("{k}={}", self.step_env.get(k).flatten().unwrap_or_default()))
            .collect()
    }

    /// The value of ENV `name`.
    pub(crate) fn env_get(&self, name: &str) -> Option<&str> {
        let i = *self.env_index.get(name)?;
        Some(split_entry(&self.image.config.env[i]).1)
    }

    /// Sets ENV `name=value`, replacing an earlier value in place (and in the step
    /// environment).
    pub(crate) fn env_set(&mut self, name: &str, value: &str) {
        self.step_env
            .declare(name.to_owned(), Some(value.to_owned()));
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

    /// A variable as instructions see it: the step environment (the last ENV or ARG
    /// that set it), else an ARG kept out of it (a proxy variable); an ARG declared
    /// without a value is unset.
    pub(crate) fn lookup(&self, name: &str) -> Option<&str> {
        let found = match self.step_env.get(name) {
            Some(v) => v,
            None => self.args.get(name).flatten(),
        };
        if found.is_none()
            && let Some(names) = &self.unresolved
        {
            names.borrow_mut().insert(name.to_owned());
        }
        found
    }

    /// The environment's size in bytes: the larger of the image's ENV entries and the
    /// step environment (the few proxy variables kept out of it are bounded by the
    /// expansion limits).
    pub(crate) fn environment_size(&self) -> usize {
        self.env_bytes.max(self.step_env.bytes())
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
        // A later ARG of the same name sets the step environment, not the image's.
        s.declare_arg("NEW", Some("arg".into()), true);
        s.declare_arg("ONLY_ARG", Some("a".into()), true);
        s.declare_arg("NO_VALUE", None, true);
        s.declare_arg("HTTP_PROXY", Some("p".into()), false);
        assert_eq!(s.lookup("NEW"), Some("arg"));
        assert_eq!(s.env_get("NEW"), Some("v"));
        assert_eq!(s.lookup("ONLY_ARG"), Some("a"));
        assert_eq!(s.lookup("NO_VALUE"), None);
        assert_eq!(s.lookup("HTTP_PROXY"), Some("p"));
        assert_eq!(
            s.step_env(),
            ["PATH=/bin", "X=33", "NEW=arg", "ONLY_ARG=a"],
            "in the order of each name's last assignment"
        );
        assert_eq!(
            s.history_args(&|k| k == "HTTP_PROXY"),
            ["NEW=arg", "ONLY_ARG=a", "NO_VALUE="]
        );
        // A child stage starts with both.
        let child = Scope::inherit(s.image.clone(), s.inherited());
        assert_eq!(child.lookup("ONLY_ARG"), Some("a"));
        assert_eq!(child.history_args(&|_| false).len(), 4);
    }
}
