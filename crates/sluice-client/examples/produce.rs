//! Sends keyed records to a topic and prints where each landed.
//!
//! ```text
//! scripts/start-cluster.sh && bin/sluice topic create orders --partitions 3
//! cargo run -p sluice-client --example produce -- orders 10
//! ```

use bytes::Bytes;
use sluice_client::{Cluster, Producer, ProducerConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let count: u32 = args.next().map_or(Ok(10), |n| n.parse())?;
    let bootstrap: Vec<String> =
        ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"].map(String::from).into();

    let cluster = Cluster::new(&bootstrap)?;
    // Idempotent by default: retries after a leader change cannot duplicate a record.
    let producer = Producer::new(cluster, ProducerConfig::default());
    let mut deliveries = Vec::new();
    for i in 0..count {
        let key = Bytes::from(format!("customer-{}", i % 4));
        let value = Bytes::from(format!("order {i}"));
        deliveries.push((i, producer.send(&topic, Some(key), value).await?));
    }
    for (i, delivery) in deliveries {
        let at = delivery.await?;
        println!("order {i} -> partition {} offset {}", at.partition, at.offset);
    }
    producer.close().await;
    Ok(())
}
