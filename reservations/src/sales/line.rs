//! The sale's settings of its line that are not admission: who may join (`access`) and
//! the merchant's message to everyone in line (API.md v1.1, "the line").

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{invalid, FieldError};

/// Longest message to the line, in characters (API.md).
pub const MESSAGE_CHARS: usize = 280;

/// Who may join a sale's line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Anyone may join (a priority code still moves its holder ahead).
    #[default]
    Public,
    /// Joining needs an access code the merchant uploaded.
    Codes,
}

impl Access {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Codes => "codes",
        }
    }

    /// The column value back (the column's check constraint admits only these two).
    pub fn parse(s: &str) -> Access {
        match s {
            "codes" => Access::Codes,
            _ => Access::Public,
        }
    }
}

/// A message to the line: at most [`MESSAGE_CHARS`] characters, or none. An empty or
/// blank text clears it, as null does.
pub fn parse_message(text: Option<String>) -> Result<Option<String>, FieldError> {
    let Some(text) = text else { return Ok(None) };
    if text.contains('\0') {
        return Err(invalid("text", "must not contain a NUL character"));
    }
    if text.chars().count() > MESSAGE_CHARS {
        return Err(invalid(
            "text",
            format!("at most {MESSAGE_CHARS} characters"),
        ));
    }
    Ok((!text.trim().is_empty()).then_some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_at_most_280_characters_and_blank_clears_it() {
        assert_eq!(
            parse_message(Some("é".repeat(280)))
                .unwrap()
                .unwrap()
                .chars()
                .count(),
            280
        );
        assert_eq!(
            parse_message(Some("x".repeat(281))).unwrap_err().field,
            "text"
        );
        assert_eq!(parse_message(Some("  ".into())).unwrap(), None);
        assert_eq!(parse_message(None).unwrap(), None);
    }
}
