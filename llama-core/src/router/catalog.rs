//! The models a router serves, by id and alias.

use std::path::PathBuf;

/// One model the router may load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The id requests name and `/v1/models` lists.
    pub id: String,
    /// Other names requests may use.
    pub aliases: Vec<String>,
    /// The file to open (the first part of a split model).
    pub path: PathBuf,
}

/// A name given twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the model name {name:?} is given to both {first} and {second}")]
pub struct DuplicateName {
    /// The name.
    pub name: String,
    /// The model that had it first.
    pub first: String,
    /// The model that asked for it again.
    pub second: String,
}

/// The models, in the order they were added.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    entries: Vec<CatalogEntry>,
}

impl Catalog {
    /// Adds a model; refuses an id or alias that names another model already. Returns its
    /// index.
    pub fn add(&mut self, entry: CatalogEntry) -> Result<usize, DuplicateName> {
        for name in std::iter::once(&entry.id).chain(&entry.aliases) {
            if let Some(k) = self.find(name) {
                return Err(DuplicateName {
                    name: name.clone(),
                    first: self.entries[k].id.clone(),
                    second: entry.id.clone(),
                });
            }
        }
        self.entries.push(entry);
        Ok(self.entries.len() - 1)
    }

    /// The model named `name` (its id first, then the aliases).
    pub fn find(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.id == name).or_else(|| {
            self.entries
                .iter()
                .position(|e| e.aliases.iter().any(|a| a == name))
        })
    }

    /// Whether a model with this id exists.
    pub fn contains_id(&self, id: &str) -> bool {
        self.entries.iter().any(|e| e.id == id)
    }

    /// Model `i`.
    pub fn get(&self, i: usize) -> &CatalogEntry {
        &self.entries[i]
    }

    /// All models.
    pub fn entries(&self) -> &[CatalogEntry] {
        &self.entries
    }

    /// Models known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, aliases: &[&str]) -> CatalogEntry {
        CatalogEntry {
            id: id.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            path: PathBuf::from(format!("/m/{id}.gguf")),
        }
    }

    #[test]
    fn finds_by_id_then_alias_and_refuses_duplicates() {
        let mut c = Catalog::default();
        assert_eq!(c.add(entry("a", &["small"])), Ok(0));
        assert_eq!(c.add(entry("b", &["big"])), Ok(1));
        assert_eq!(c.find("a"), Some(0));
        assert_eq!(c.find("big"), Some(1));
        assert_eq!(c.find("c"), None);
        let err = c.add(entry("c", &["small"])).unwrap_err();
        assert_eq!(
            (err.name.as_str(), err.first.as_str(), err.second.as_str()),
            ("small", "a", "c")
        );
        assert!(c.add(entry("a", &[])).is_err());
        assert_eq!(c.len(), 2);
    }
}
