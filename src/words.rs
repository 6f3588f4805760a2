//! Counted nouns in the lines people read: "1 fault", "2 faults", "1 byte".

/// `n` and `noun`, plural unless `n` is 1 (`noun` is singular and takes an `s`).
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(count(1u32, "fault"), "1 fault");
        assert_eq!(count(0u32, "fault"), "0 faults");
        assert_eq!(count(2u64, "byte"), "2 bytes");
    }
}
