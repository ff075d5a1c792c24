//! Layering of settings from several sources (command line over environment over file), in the
//! shape of uv's `Combine`: `a.combine(b)` keeps what `a` set and fills the rest from `b`.

/// Merge two layers of the same settings; `self` takes precedence over `other`.
pub trait Combine {
    fn combine(self, other: Self) -> Self;
}

impl<T> Combine for Option<T> {
    fn combine(self, other: Option<T>) -> Option<T> {
        self.or(other)
    }
}

/// `(key, value)` lists (e.g. extra server flags): every key of `self`, then `other`'s other keys.
impl<V> Combine for Vec<(String, V)> {
    fn combine(mut self, other: Vec<(String, V)>) -> Vec<(String, V)> {
        for (key, value) in other {
            if !self.iter().any(|(k, _)| *k == key) {
                self.push((key, value));
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_keeps_the_first_layer_that_is_set() {
        assert_eq!(Some(1).combine(Some(2)), Some(1));
        assert_eq!(None.combine(Some(2)), Some(2));
        assert_eq!(None::<u32>.combine(None), None);
    }

    #[test]
    fn three_layers_chain_in_order() {
        let (cli, env, file) = (None, Some("env"), Some("file"));
        assert_eq!(cli.combine(env).combine(file), Some("env"));
    }

    #[test]
    fn keyed_lists_keep_the_first_layers_value_per_key() {
        let cli = vec![("--a".to_string(), 1)];
        let file = vec![("--b".to_string(), 2), ("--a".to_string(), 3)];
        assert_eq!(
            cli.combine(file),
            vec![("--a".to_string(), 1), ("--b".to_string(), 2)]
        );
    }
}
