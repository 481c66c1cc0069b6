//! TEMPORARY (grpc branch): starts only the example's upstream services, so they can be
//! tried with grpcurl. The lead replaces this file with the real booking example (the
//! orchestrator on port 10000, flags for transports and roles).
//!
//! `cargo run --example booking` then
//! `grpcurl -plaintext localhost:10001 list` (order) and `localhost:10002` (payment).

mod order;
mod payment;
mod upstream;

use saga_runtime::grpc::GrpcServer;
use upstream::LoadConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let order_svc = order::OrderSvc::new(LoadConfig::default());
    let payment_svc = payment::PaymentSvc::new(LoadConfig::default());
    let orders = GrpcServer::new()
        .register_file_descriptor_set(booking_proto::FILE_DESCRIPTOR_SET)
        .add_service(order_svc.clone().into_server())
        .serve("127.0.0.1:10001".parse()?)
        .await?;
    let payments = GrpcServer::new()
        .register_file_descriptor_set(booking_proto::FILE_DESCRIPTOR_SET)
        .add_service(payment_svc.clone().into_server())
        .serve("127.0.0.1:10002".parse()?)
        .await?;
    let (a, b) = tokio::join!(orders.wait(), payments.wait());
    a?;
    b?;
    tracing::info!(
        order = ?order_svc.gate().stats(false),
        payment = ?payment_svc.gate().stats(false),
        "upstream load since start"
    );
    Ok(())
}
