//! The server end to end: a real server on port 0 over a real Postgres
//! (each test its own database), driven by real HTTP and gRPC clients.

mod cli;
mod common;
mod grpc;
mod http;
mod ingest;
mod models;
mod reference;
