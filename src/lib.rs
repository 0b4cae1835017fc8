#![forbid(unsafe_code)]
pub mod body;
pub mod fixture;
pub mod gbk;
pub mod header;
pub mod mask;
pub mod schema;
