use sluice_proto::v1 as pb;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("no bootstrap address given")]
    NoBootstrap,
    #[error("invalid address {addr}: {reason}")]
    InvalidAddress { addr: String, reason: String },
    /// The cluster answered with an error; `code` is Sluice's stable code (`TOPIC_EXISTS`, ...).
    #[error("{code}: {message}")]
    Refused { code: String, message: String },
    #[error("no node reachable ({0})")]
    Unreachable(String),
    #[error("record could not be encoded: {0}")]
    InvalidRecord(String),
    #[error("gave up after {attempts} attempts: {last}")]
    DeliveryTimeout { attempts: u32, last: String },
    #[error("the producer is closed")]
    Closed,
}

/// The stable name of a data-path error code.
pub(crate) fn code_name(code: i32) -> String {
    pb::ErrorCode::try_from(code).map_or_else(
        |_| format!("CODE_{code}"),
        |c| c.as_str_name().trim_start_matches("ERROR_CODE_").to_string(),
    )
}

pub(crate) fn refused(error: &pb::Error) -> ClientError {
    ClientError::Refused { code: code_name(error.code), message: error.message.clone() }
}
