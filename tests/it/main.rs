//! The one integration-test binary: every test talks to real sockets.

mod cli;
mod hostile;
mod codec;
mod ops;
mod rejections;
mod relay;
mod routing;
mod support;
mod tools;
