//! HTTP, reqwest and gRPC classification against real servers on 127.0.0.1 (ephemeral ports,
//! started by each test): trips, rate-limit cool-downs, streams that die or end cleanly,
//! bodies dropped early, and the `Retry-After` parser.

#[path = "../support/mod.rs"]
mod support;

mod classify;
mod grpc;
mod hyper_client;
mod reqwest_client;
mod retry_after;
mod server;
