//! The gateway's response codes, and the one error type of the message path.
//!
//! Every way a message can fail maps to exactly one code of protocol.md §5,
//! and carries whether the request may have reached a backend: that is what
//! decides whether a retry is safe.

use std::fmt;

/// A response code of protocol.md §5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RspCode {
    Success,
    /// GW0001 报文格式错误
    Malformed,
    /// GW0002 报文超长
    Oversize,
    /// GW0003 编码错误
    Charset,
    /// GW0101 交易码不存在
    UnknownCode,
    /// GW0102 渠道无权限
    ChannelDenied,
    /// GW0103 流水号重复
    DuplicateSeq,
    /// GW0201 后端连接失败 (not sent)
    BackendUnreachable,
    /// GW0202 后端超时，结果未知 (sent)
    BackendTimeout,
    /// GW0203 系统繁忙
    Busy,
    /// GW0204 后端响应非法
    BadAnswer,
    /// GW9999 系统异常
    Internal,
}

impl RspCode {
    pub const ALL: [RspCode; 12] = [
        RspCode::Success,
        RspCode::Malformed,
        RspCode::Oversize,
        RspCode::Charset,
        RspCode::UnknownCode,
        RspCode::ChannelDenied,
        RspCode::DuplicateSeq,
        RspCode::BackendUnreachable,
        RspCode::BackendTimeout,
        RspCode::Busy,
        RspCode::BadAnswer,
        RspCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RspCode::Success => "000000",
            RspCode::Malformed => "GW0001",
            RspCode::Oversize => "GW0002",
            RspCode::Charset => "GW0003",
            RspCode::UnknownCode => "GW0101",
            RspCode::ChannelDenied => "GW0102",
            RspCode::DuplicateSeq => "GW0103",
            RspCode::BackendUnreachable => "GW0201",
            RspCode::BackendTimeout => "GW0202",
            RspCode::Busy => "GW0203",
            RspCode::BadAnswer => "GW0204",
            RspCode::Internal => "GW9999",
        }
    }

    /// The short Chinese meaning that starts every RspMsg of this code.
    pub fn meaning(self) -> &'static str {
        match self {
            RspCode::Success => "成功",
            RspCode::Malformed => "报文格式错误",
            RspCode::Oversize => "报文超长",
            RspCode::Charset => "编码错误",
            RspCode::UnknownCode => "交易码不存在",
            RspCode::ChannelDenied => "渠道无权限",
            RspCode::DuplicateSeq => "流水号重复",
            RspCode::BackendUnreachable => "后端连接失败",
            RspCode::BackendTimeout => "后端超时，结果未知",
            RspCode::Busy => "系统繁忙",
            RspCode::BadAnswer => "后端响应非法",
            RspCode::Internal => "系统异常",
        }
    }

    pub fn parse(s: &str) -> Option<RspCode> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for RspCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a failure came from, pingora-style: it decides who is to blame
/// and whether a retry can be considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The caller sent something wrong. Never retried.
    Downstream,
    /// The backend failed. Retried only under the route's rules.
    Upstream,
    /// The gateway itself.
    Internal,
}

/// A failure on the message path: a response code, the readable detail that
/// goes into RspMsg, and whether the request may have reached a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GwError {
    pub code: RspCode,
    pub detail: String,
    pub reached_backend: bool,
}

impl GwError {
    pub fn new(code: RspCode, detail: impl Into<String>) -> Self {
        let reached_backend = matches!(code, RspCode::BackendTimeout | RspCode::BadAnswer);
        GwError {
            code,
            detail: detail.into(),
            reached_backend,
        }
    }

    pub fn side(&self) -> Side {
        match self.code {
            RspCode::Malformed
            | RspCode::Oversize
            | RspCode::Charset
            | RspCode::UnknownCode
            | RspCode::ChannelDenied
            | RspCode::DuplicateSeq => Side::Downstream,
            RspCode::BackendUnreachable | RspCode::BackendTimeout | RspCode::BadAnswer => {
                Side::Upstream
            }
            RspCode::Busy | RspCode::Internal | RspCode::Success => Side::Internal,
        }
    }

    /// Whether the request certainly never left the gateway (no connection,
    /// or no capacity): its SeqNo may then be used again.
    pub fn never_sent(&self) -> bool {
        !self.reached_backend && matches!(self.code, RspCode::BackendUnreachable | RspCode::Busy)
    }

    /// The RspMsg text: the code's meaning, then what and where.
    pub fn rsp_msg(&self) -> String {
        if self.detail.is_empty() {
            self.code.meaning().to_string()
        } else {
            format!("{}：{}", self.code.meaning(), self.detail)
        }
    }
}

impl fmt::Display for GwError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.rsp_msg())
    }
}

impl std::error::Error for GwError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_request_that_never_left_the_gateway_counts_as_never_sent() {
        assert!(GwError::new(RspCode::BackendUnreachable, "").never_sent());
        assert!(GwError::new(RspCode::Busy, "").never_sent());
        assert!(!GwError::new(RspCode::BackendTimeout, "").never_sent());
        assert!(!GwError::new(RspCode::BadAnswer, "").never_sent());
        assert!(!GwError::new(RspCode::Internal, "").never_sent());
        let mut sent = GwError::new(RspCode::BackendUnreachable, "");
        sent.reached_backend = true;
        assert!(!sent.never_sent());
    }

    #[test]
    fn each_code_has_the_side_that_failed() {
        assert_eq!(
            GwError::new(RspCode::ChannelDenied, "").side(),
            Side::Downstream
        );
        assert_eq!(
            GwError::new(RspCode::BackendTimeout, "").side(),
            Side::Upstream
        );
        assert_eq!(GwError::new(RspCode::Busy, "").side(), Side::Internal);
    }
}
