//! User text inside SQL `LIKE` patterns: matched literally on both engines.
//!
//! `%` and `_` are wildcards and `\` is the escape character we declare
//! (`ESCAPE '\'`, the same on SQLite and PostgreSQL). Stripping them instead
//! would make `q=%` match everyone and an exact email with `_` match no one.

/// The escape character every `LIKE` built from [`like_contains`] declares.
pub const LIKE_ESCAPE: char = '\\';

/// `%{s}%` with `s`'s metacharacters escaped: "contains `s`, literally".
/// Use with `LIKE $n ESCAPE '\'`.
pub fn like_contains(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | LIKE_ESCAPE) {
            out.push(LIKE_ESCAPE);
        }
        out.push(c);
    }
    out.push('%');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metacharacters_are_escaped() {
        assert_eq!(like_contains("ana"), "%ana%");
        assert_eq!(like_contains("%"), r"%\%%");
        assert_eq!(like_contains("a_b"), r"%a\_b%");
        assert_eq!(like_contains(r"50%_off\"), r"%50\%\_off\\%");
        assert_eq!(like_contains(""), "%%");
    }
}
