//! Free text typed by people (names, descriptions, consent references,
//! reasons): checked once at the edge so that what is stored can be shown
//! anywhere — a dashboard, a CSV export, a log line — without hiding or
//! reordering what surrounds it.

/// Why a text field was refused; `field` is the caller's name for it
/// (`name`, `consent_reference`, …) so the error can name it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("{field}: must not be empty")]
    Empty { field: String },
    #[error("{field}: at most {max} characters")]
    TooLong { field: String, max: usize },
    #[error("{field}: control and bidirectional-override characters are not allowed")]
    ForbiddenCharacter { field: String },
}

impl FieldError {
    pub fn field(&self) -> &str {
        match self {
            Self::Empty { field } | Self::TooLong { field, .. } => field,
            Self::ForbiddenCharacter { field } => field,
        }
    }
}

/// Bidirectional embeddings, overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069): they make a name render as something else ("Trojan
/// Source").
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A character a stored single-line field must not hold: C0 and C1
/// controls (NUL, escapes, line breaks, tabs) and bidi controls.
pub fn is_forbidden(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// Trims `value` and checks it: not empty, at most `max_chars` characters
/// (Unicode scalar values), no forbidden character. Returns the trimmed text.
pub fn check_field<'a>(
    field: &str,
    value: &'a str,
    max_chars: usize,
) -> Result<&'a str, FieldError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(FieldError::Empty {
            field: field.to_owned(),
        });
    }
    if v.chars().count() > max_chars {
        return Err(FieldError::TooLong {
            field: field.to_owned(),
            max: max_chars,
        });
    }
    if v.chars().any(is_forbidden) {
        return Err(FieldError::ForbiddenCharacter {
            field: field.to_owned(),
        });
    }
    Ok(v)
}

/// Like [`check_field`] for multi-line text (descriptions, notes): line
/// breaks and tabs are allowed, other controls and bidi controls are not.
pub fn check_multiline<'a>(
    field: &str,
    value: &'a str,
    max_chars: usize,
) -> Result<&'a str, FieldError> {
    let v = value.trim();
    if v.chars().count() > max_chars {
        return Err(FieldError::TooLong {
            field: field.to_owned(),
            max: max_chars,
        });
    }
    if v.chars()
        .any(|c| !matches!(c, '\n' | '\r' | '\t') && is_forbidden(c))
    {
        return Err(FieldError::ForbiddenCharacter {
            field: field.to_owned(),
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_text_and_trims() {
        assert_eq!(
            check_field("name", "  VIP — México 🇲🇽 ", 50),
            Ok("VIP — México 🇲🇽")
        );
        assert_eq!(
            check_multiline("description", "line 1\nline 2\t", 50),
            Ok("line 1\nline 2")
        );
    }

    #[test]
    fn refuses_empty_long_and_hidden_characters() {
        assert!(matches!(
            check_field("name", "   ", 5),
            Err(FieldError::Empty { .. })
        ));
        assert!(matches!(
            check_field("name", "ñññññx", 5),
            Err(FieldError::TooLong { max: 5, .. })
        ));
        for bad in [
            "a\0b",
            "a\u{202E}b",
            "a\u{2066}b",
            "a\u{1b}[31m",
            "a\u{85}b",
            "a\nb",
        ] {
            let e = check_field("name", bad, 50).unwrap_err();
            assert_eq!(e.field(), "name", "{bad:?}");
            assert!(
                matches!(e, FieldError::ForbiddenCharacter { .. }),
                "{bad:?}"
            );
        }
        assert!(check_multiline("description", "a\u{202E}b", 50).is_err());
        assert!(check_multiline("description", "a\0b", 50).is_err());
        assert_eq!(check_multiline("description", "", 50), Ok(""));
    }
}
