//! The one integration-test binary: every test talks to real sockets.

mod bodies;
mod cli;
mod codec;
mod faults;
mod hostile;
mod ops;
mod rejections;
mod relay;
mod routing;
mod support;
mod tools;
