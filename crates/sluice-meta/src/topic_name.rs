use crate::MetaError;

/// The longest topic name (Kafka's limit).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// A topic name is 1 to 249 characters of `[A-Za-z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), MetaError> {
    let invalid = |reason: &str| MetaError::InvalidTopicName {
        name: name.chars().take(300).collect(),
        reason: reason.into(),
    };
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(invalid("longer than 249 characters"));
    }
    if name == "." || name == ".." {
        return Err(invalid("'.' and '..' are not topic names"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(invalid(&format!("character {c:?} is not one of [A-Za-z0-9._-]")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        for ok in ["a", "orders", "orders.v2", "A-b_c.9", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "é", &"x".repeat(250), "a\nb"] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }
}
