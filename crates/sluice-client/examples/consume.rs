//! Reads a partition from the beginning, by pull (long polling) or push (a credit stream).
//!
//! ```text
//! cargo run -p sluice-client --example consume -- orders 0 pull
//! cargo run -p sluice-client --example consume -- orders 0 push
//! ```

use sluice_client::{Cluster, Consumer, ConsumerConfig, StartAt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let partition: u32 = args.next().map_or(Ok(0), |p| p.parse())?;
    let push = args.next().as_deref() == Some("push");
    let bootstrap: Vec<String> =
        ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"].map(String::from).into();

    let cluster = Cluster::new(&bootstrap)?;
    let mut consumer =
        Consumer::new(cluster, &topic, partition, StartAt::Earliest, ConsumerConfig::default());
    let (_, end) = consumer.offsets().await?;
    if push {
        let mut subscription = consumer.subscribe(1000, 4 << 20).await?;
        while subscription.position() < end {
            for record in subscription.next().await? {
                println!("{}: {}", record.offset, String::from_utf8_lossy(&record.value));
            }
        }
    } else {
        while consumer.position().is_none_or(|p| p < end) {
            for record in consumer.poll().await? {
                println!("{}: {}", record.offset, String::from_utf8_lossy(&record.value));
            }
        }
    }
    Ok(())
}
