//! The delivery client's resolver: only public addresses.

use std::net::SocketAddr;

use palmlink_domain::is_global;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// A resolver that drops every non-global address, so a connection is only ever made to a
/// public address whatever the name resolves to at that moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuardedResolver;

/// Error of a name that resolves to no public address.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves to no public address")]
struct NoPublicAddress(String);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = found.filter(|a| is_global(a.ip())).collect();
            if public.is_empty() {
                return Err(
                    Box::new(NoPublicAddress(host)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn private_addresses_are_dropped() {
        let refused = GuardedResolver.resolve("localhost".parse().unwrap()).await;
        assert!(refused.is_err());
    }
}
