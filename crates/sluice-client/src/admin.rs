use std::time::Duration;

use sluice_proto::v1 as pb;
use sluice_proto::v1::admin_client::AdminClient;
use tonic::transport::{Channel, Endpoint};

use crate::ClientError;

/// How long one call may take before the next bootstrap address is tried.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn refused(status: &tonic::Status) -> ClientError {
    let code = status
        .metadata()
        .get("sluice-error")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| format!("{:?}", status.code()).to_uppercase(), str::to_string);
    ClientError::Refused { code, message: status.message().to_string() }
}

/// Admin operations against a cluster.
#[derive(Debug, Clone)]
pub struct Admin {
    nodes: Vec<(String, Channel)>,
}

impl Admin {
    /// Prepares connections to every bootstrap address (`host:port`); nothing is dialled until
    /// the first call.
    pub fn new(bootstrap: &[String]) -> Result<Admin, ClientError> {
        if bootstrap.is_empty() {
            return Err(ClientError::NoBootstrap);
        }
        let nodes = bootstrap
            .iter()
            .map(|addr| {
                let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|e| ClientError::InvalidAddress { addr: addr.clone(), reason: e.to_string() })?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(CALL_TIMEOUT);
                Ok((addr.clone(), endpoint.connect_lazy()))
            })
            .collect::<Result<_, ClientError>>()?;
        Ok(Admin { nodes })
    }

    /// Runs `call` on each node in turn until one answers. Unreachable nodes and `NOT_LEADER` or
    /// `UNAVAILABLE` answers move on to the next; any other error is the cluster's verdict.
    async fn call<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(AdminClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut failures = Vec::new();
        for (addr, channel) in &self.nodes {
            match call(AdminClient::new(channel.clone())).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status)
                    if matches!(status.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded) =>
                {
                    failures.push(format!("{addr}: {}", status.message()));
                }
                Err(status) => return Err(refused(&status)),
            }
        }
        Err(ClientError::Unreachable(failures.join("; ")))
    }

    pub async fn cluster_status(&self) -> Result<pb::ClusterStatusResponse, ClientError> {
        self.call(|mut c| async move { c.cluster_status(pb::ClusterStatusRequest {}).await }).await
    }

    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        config: pb::TopicConfig,
    ) -> Result<pb::TopicInfo, ClientError> {
        let request = pb::CreateTopicRequest {
            name: name.to_string(),
            partitions,
            replication_factor,
            config: Some(config),
        };
        let response = self.call(|mut c| {
            let request = request.clone();
            async move { c.create_topic(request).await }
        });
        response.await?.topic.ok_or_else(|| ClientError::Unreachable("empty answer".into()))
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        let request = pb::DeleteTopicRequest { name: name.to_string() };
        self.call(|mut c| {
            let request = request.clone();
            async move { c.delete_topic(request).await }
        })
        .await?;
        Ok(())
    }

    pub async fn list_topics(&self) -> Result<Vec<pb::TopicInfo>, ClientError> {
        let response = self
            .call(|mut c| async move { c.list_topics(pb::ListTopicsRequest { consistent: true }).await })
            .await?;
        Ok(response.topics)
    }

    pub async fn describe_topic(&self, name: &str) -> Result<pb::TopicInfo, ClientError> {
        let request = pb::DescribeTopicRequest { name: name.to_string(), consistent: true };
        let response = self.call(|mut c| {
            let request = request.clone();
            async move { c.describe_topic(request).await }
        });
        response.await?.topic.ok_or_else(|| ClientError::Unreachable("empty answer".into()))
    }
}
