//! What a person may ask of an issue, checked before it is written: the snooze rules, and text
//! that shows what is stored. Where actions go and are read back from is `IssueKeeping`.

use std::sync::Arc;

use thiserror::Error;

use super::{ActionKind, IssueAction, IssueBook};
use crate::changelog::ChangelogWriter;
use crate::event::is_bidi_control;
use crate::store::format_failure_id;

pub(crate) const MAX_ACTOR_CHARS: usize = 128;
pub(crate) const MAX_NOTE_CHARS: usize = 1024;

/// Where actions go and where they are read back from.
pub struct IssueKeeping {
    pub(crate) writer: Arc<ChangelogWriter>,
    pub(crate) book: Arc<IssueBook>,
}

/// Why an action is refused; each names the request field at fault.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub(crate) enum ActionError {
    #[error("snooze_until is required to snooze")]
    SnoozeWithoutEnd,
    #[error("snooze_until must be in the future")]
    SnoozeEndPassed,
    #[error("snooze_until is only for SNOOZE")]
    EndWithoutSnooze,
    #[error("{field} may be at most {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} may not hold control characters")]
    Control { field: &'static str },
    #[error(
        "{field} may not hold bidirectional controls, which show text other than what is stored"
    )]
    Bidi { field: &'static str },
    #[error(
        "actor may not hold format characters (zero-width, bidirectional and the like), which \
         make one name look like another"
    )]
    Format,
}

/// What a person asked, before it is checked.
pub(crate) struct Request<'a> {
    pub(crate) tenant_id: &'a str,
    pub(crate) failure_id: u128,
    pub(crate) kind: ActionKind,
    pub(crate) snooze_until_ms: Option<i64>,
    pub(crate) actor: &'a str,
    pub(crate) note: &'a str,
}

impl IssueAction {
    /// The action `request` asks for at `now_ms`, or why it cannot be taken.
    pub(crate) fn checked(request: Request<'_>, now_ms: i64) -> Result<IssueAction, ActionError> {
        let until_ms = match (request.kind, request.snooze_until_ms) {
            (ActionKind::Snooze, None) => return Err(ActionError::SnoozeWithoutEnd),
            (ActionKind::Snooze, Some(until)) if until <= now_ms => {
                return Err(ActionError::SnoozeEndPassed)
            }
            (ActionKind::Snooze, Some(until)) => Some(until),
            (_, Some(_)) => return Err(ActionError::EndWithoutSnooze),
            (_, None) => None,
        };
        Ok(IssueAction {
            tenant_id: request.tenant_id.to_owned(),
            failure_id: format_failure_id(request.failure_id),
            action: request.kind,
            actor: actor_name(request.actor)?,
            grant: String::new(),
            at_ms: now_ms,
            note: typed("note", request.note, MAX_NOTE_CHARS)?.to_owned(),
            until_ms,
        })
    }
}

/// Who acted, as typed: no control or format character (a zero-width space or a direction
/// mark would make two names that look alike differ), and in NFC, so one name is stored one
/// way however the caller's keyboard composed it.
fn actor_name(text: &str) -> Result<String, ActionError> {
    use unicode_general_category::{get_general_category, GeneralCategory};
    use unicode_normalization::UnicodeNormalization;
    let text = typed("actor", text, MAX_ACTOR_CHARS)?;
    if text.contains('\n') {
        return Err(ActionError::Control { field: "actor" });
    }
    if text
        .chars()
        .any(|c| get_general_category(c) == GeneralCategory::Format)
    {
        return Err(ActionError::Format);
    }
    Ok(text.nfc().collect())
}

/// Text a person typed: at most `max` characters, and no control characters but newlines.
fn typed<'a>(field: &'static str, text: &'a str, max: usize) -> Result<&'a str, ActionError> {
    if text.chars().count() > max {
        return Err(ActionError::TooLong { field, max });
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ActionError::Control { field });
    }
    if text.chars().any(is_bidi_control) {
        return Err(ActionError::Bidi { field });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_actor_is_refused_format_characters_and_stored_in_nfc() {
        assert_eq!(actor_name("ana").unwrap(), "ana");
        // "é" as e and a combining acute accent is stored as the one character.
        assert_eq!(actor_name("Jose\u{301}").unwrap(), "Jos\u{e9}");
        for hidden in ["a\u{200b}na", "ana\u{feff}", "a\u{2060}na", "a\u{00ad}na"] {
            assert_eq!(actor_name(hidden), Err(ActionError::Format), "{hidden:?}");
        }
        assert!(actor_name("ana\nbob").is_err());
        assert!(actor_name("ana\u{7}").is_err());
    }

    fn asked(kind: ActionKind, until: Option<i64>, note: &str) -> Request<'_> {
        Request {
            tenant_id: "acme",
            failure_id: 7,
            kind,
            snooze_until_ms: until,
            actor: "ana",
            note,
        }
    }

    #[test]
    fn snoozes_need_a_future_end_and_nothing_else_takes_one() {
        let now = 1_000;
        let check = |kind, until| IssueAction::checked(asked(kind, until, ""), now).err();
        assert_eq!(
            check(ActionKind::Snooze, None),
            Some(ActionError::SnoozeWithoutEnd)
        );
        assert_eq!(
            check(ActionKind::Snooze, Some(now)),
            Some(ActionError::SnoozeEndPassed)
        );
        assert_eq!(
            check(ActionKind::Resolve, Some(now + 1)),
            Some(ActionError::EndWithoutSnooze)
        );
        assert_eq!(check(ActionKind::Snooze, Some(now + 1)), None);
        assert_eq!(check(ActionKind::Acknowledge, None), None);
    }

    #[test]
    fn notes_show_what_is_stored() {
        let check = |note| IssueAction::checked(asked(ActionKind::Resolve, None, note), 0).err();
        assert_eq!(check("two\nlines"), None);
        assert_eq!(
            check("bell\u{7}"),
            Some(ActionError::Control { field: "note" })
        );
        assert_eq!(
            check("a\u{202e}b"),
            Some(ActionError::Bidi { field: "note" })
        );
        let long = "x".repeat(MAX_NOTE_CHARS + 1);
        assert!(matches!(check(&long), Some(ActionError::TooLong { .. })));
    }
}
