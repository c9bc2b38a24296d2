//! Which providers this build knows, and building them from config.

use std::collections::BTreeMap;
use std::sync::Arc;

use handover_core::{Error, Provider, Result};
use handover_transport::push::PendingLimits;

/// Every provider of the workspace: config name and the `handover` feature that enables it.
pub const PROVIDERS: [(&str, &str); 6] = [
    ("liveagent", "liveagent"),
    ("salesforce", "salesforce"),
    ("miaw", "miaw"),
    ("genesys", "genesys"),
    ("8x8", "8x8"),
    ("ringcentral", "ringcentral"),
];

/// Builds a provider from its (already `*_env`-resolved) config table.
pub type Builder = fn(toml::Value, &BuildOptions) -> Result<Arc<dyn Provider>>;

/// What a provider is built with besides its own table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuildOptions {
    /// For push providers: the webhook deliveries kept for sessions not registered yet
    /// (the `[webhook]` table's `pending_*` keys).
    pub pending: PendingLimits,
}

/// The providers compiled into this build.
///
/// Built from `cfg`'d calls, one per feature: asking for a provider whose feature is off
/// is a [`Config`](handover_core::ErrorKind::Config) error naming the feature.
#[derive(Clone)]
pub struct Registry {
    builders: BTreeMap<&'static str, Builder>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("enabled", &self.enabled_providers()).finish()
    }
}

/// Deserializes a provider's config table; errors name the table and the key
/// (`[genesys] \`priority\`: invalid type: string "high", expected i64`).
pub fn provider_config<T: serde::de::DeserializeOwned>(provider: &'static str, table: toml::Value) -> Result<T> {
    crate::config::deserialize_table(provider, table).map_err(|message| Error::config(provider, message))
}

impl Registry {
    /// A registry of every provider enabled by this build's features.
    pub fn new() -> Self {
        #[allow(unused_mut)]
        let mut registry = Self::empty();
        #[cfg(feature = "8x8")]
        registry.register("8x8", |table, options| {
            let config = provider_config::<provider_8x8::EightByEightConfig>("8x8", table)?;
            Ok(Arc::new(provider_8x8::EightByEightProvider::builder(config).pending(options.pending).build()?))
        });
        #[cfg(feature = "genesys")]
        registry.register("genesys", |table, options| {
            let config = provider_config::<provider_genesys::GenesysConfig>("genesys", table)?;
            Ok(Arc::new(provider_genesys::GenesysProvider::builder(config).pending(options.pending).build()?))
        });
        #[cfg(feature = "liveagent")]
        registry.register("liveagent", |table, options| {
            let config = provider_config::<provider_liveagent::LiveAgentConfig>("liveagent", table)?;
            Ok(Arc::new(provider_liveagent::LiveAgentProvider::builder(config).pending(options.pending).build()?))
        });
        #[cfg(feature = "miaw")]
        registry.register("miaw", |table, _| {
            let config = provider_config::<provider_miaw::MiawConfig>("miaw", table)?;
            Ok(Arc::new(provider_miaw::MiawProvider::new(config)?))
        });
        #[cfg(feature = "ringcentral")]
        registry.register("ringcentral", |table, options| {
            let config = provider_config::<provider_ringcentral::RingCentralConfig>("ringcentral", table)?;
            Ok(Arc::new(provider_ringcentral::RingCentralProvider::builder(config).pending(options.pending).build()?))
        });
        #[cfg(feature = "salesforce")]
        registry.register("salesforce", |table, _| {
            let config = provider_config::<provider_salesforce::SalesforceConfig>("salesforce", table)?;
            Ok(Arc::new(provider_salesforce::SalesforceProvider::new(config)?))
        });
        registry
    }

    /// A registry with no providers (add them with [`register`](Self::register)).
    pub fn empty() -> Self {
        Self { builders: BTreeMap::new() }
    }

    /// Adds (or replaces) a provider.
    pub fn register(&mut self, name: &'static str, builder: Builder) -> &mut Self {
        self.builders.insert(name, builder);
        self
    }

    /// The names of the providers this build can create, sorted.
    pub fn enabled_providers(&self) -> Vec<&'static str> {
        self.builders.keys().copied().collect()
    }

    /// Whether `name` is enabled.
    pub fn is_enabled(&self, name: &str) -> bool {
        self.builders.contains_key(name)
    }

    /// Builds provider `name` from its config table, with default [`BuildOptions`].
    pub fn build(&self, name: &str, table: toml::Value) -> Result<Arc<dyn Provider>> {
        self.build_with(name, table, &BuildOptions::default())
    }

    /// Builds provider `name` from its config table with `options`.
    pub fn build_with(&self, name: &str, table: toml::Value, options: &BuildOptions) -> Result<Arc<dyn Provider>> {
        if let Some(builder) = self.builders.get(name) {
            return builder(table, options);
        }
        let enabled = self.enabled_providers();
        let enabled = if enabled.is_empty() { "none".to_owned() } else { enabled.join(", ") };
        match PROVIDERS.iter().find(|(known, _)| *known == name) {
            Some((_, feature)) => Err(Error::config(
                "handover",
                format!(
                    "provider `{name}` is not compiled into this build; enable the `{feature}` feature of the \
                     `handover` crate (enabled: {enabled})"
                ),
            )),
            None => Err(Error::config(
                "handover",
                format!(
                    "unknown provider `{name}`; expected one of {}",
                    PROVIDERS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use handover_core::ErrorKind;

    use super::*;

    #[test]
    fn a_provider_not_compiled_in_names_its_feature() {
        let registry = Registry::empty();
        let error = registry.build("genesys", toml::Value::Table(Default::default())).err().unwrap();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.to_string().contains("enable the `genesys` feature"), "{error}");
        let error = registry.build("zendesk", toml::Value::Table(Default::default())).err().unwrap();
        assert!(error.to_string().contains("unknown provider `zendesk`"), "{error}");
    }
}
