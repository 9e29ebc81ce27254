//! A stable content hash for cache keys: 128-bit FNV-1a (two 64-bit lanes with different
//! offset bases), the same on every platform and Rust version, so a cache written by one
//! process or machine is found by another. It is not cryptographic: keys name our own
//! results, they do not defend against an adversary.

/// Incremental hasher; fields are separated so that `("ab", "c")` and `("a", "bc")` differ.
#[derive(Debug, Clone)]
pub struct Hasher {
    a: u64,
    b: u64,
}

const PRIME: u64 = 0x0000_0100_0000_01b3;

impl Default for Hasher {
    fn default() -> Self {
        Hasher { a: 0xcbf2_9ce4_8422_2325, b: 0x6c62_272e_07bb_0142 }
    }
}

impl Hasher {
    /// Adds one field.
    pub fn field(&mut self, bytes: &[u8]) -> &mut Hasher {
        for &x in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            self.a = (self.a ^ x as u64).wrapping_mul(PRIME);
            self.b = (self.b ^ x as u64).wrapping_mul(PRIME).rotate_left(5);
        }
        self
    }

    /// Adds one text field.
    pub fn text(&mut self, s: &str) -> &mut Hasher {
        self.field(s.as_bytes())
    }

    /// The hash as 32 lowercase hex digits.
    pub fn hex(&self) -> String {
        format!("{:016x}{:016x}", self.a, self.b)
    }
}

/// The hash of a list of text fields.
pub fn hash_fields(fields: &[&str]) -> String {
    let mut h = Hasher::default();
    for f in fields {
        h.text(f);
    }
    h.hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_field_separated() {
        // A fixed value: a change of the function would orphan every cache on disk.
        assert_eq!(hash_fields(&["gcn"]), hash_fields(&["gcn"]));
        assert_ne!(hash_fields(&["ab", "c"]), hash_fields(&["a", "bc"]));
        assert_ne!(hash_fields(&["a"]), hash_fields(&["b"]));
        assert_eq!(hash_fields(&[]).len(), 32);
        assert_eq!(hash_fields(&["fuseflow"]), "6223a4ef40e2e10030603e783015d095");
    }
}
