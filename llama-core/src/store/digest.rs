//! The digests the Hub publishes, computed while bytes arrive: sha256 for LFS files, the git
//! blob id (sha1 of `blob {size}\0` and the bytes) for files stored in git.

use sha1::Sha1;
use sha2::{Digest as _, Sha256};

/// A digest to check a download against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedDigest {
    /// sha256, lower-case hex (an LFS file's `lfs.oid`).
    Sha256(String),
    /// git blob id, lower-case hex.
    GitSha1(String),
    /// Nothing published (a plain URL): the sha256 is computed and recorded, not checked.
    Unknown,
}

impl ExpectedDigest {
    /// The algorithm's name in messages.
    pub fn algorithm(&self) -> &'static str {
        match self {
            ExpectedDigest::Sha256(_) | ExpectedDigest::Unknown => "sha256",
            ExpectedDigest::GitSha1(_) => "git-sha1",
        }
    }

    /// The published digest, if any.
    pub fn expected(&self) -> Option<&str> {
        match self {
            ExpectedDigest::Sha256(d) | ExpectedDigest::GitSha1(d) => Some(d),
            ExpectedDigest::Unknown => None,
        }
    }
}

/// A running digest.
pub enum Hasher {
    /// sha256.
    Sha256(Sha256),
    /// git blob sha1.
    GitSha1(Sha1),
}

impl Hasher {
    /// A hasher for `expected`, for a file of `size` bytes.
    pub fn new(expected: &ExpectedDigest, size: u64) -> Hasher {
        match expected {
            ExpectedDigest::GitSha1(_) => {
                let mut h = Sha1::new();
                h.update(format!("blob {size}\0").as_bytes());
                Hasher::GitSha1(h)
            }
            _ => Hasher::Sha256(Sha256::new()),
        }
    }

    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::GitSha1(h) => h.update(bytes),
        }
    }

    /// The digest, lower-case hex.
    pub fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => hex(&h.finalize()),
            Hasher::GitSha1(h) => hex(&h.finalize()),
        }
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_known_values() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // `git hash-object` of a file holding "hello\n".
        let mut h = Hasher::new(&ExpectedDigest::GitSha1(String::new()), 6);
        h.update(b"hello\n");
        assert_eq!(h.finish(), "ce013625030ba8dba906f756967f9e9ca394464a");
    }
}
