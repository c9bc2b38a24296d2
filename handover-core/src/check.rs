//! What a provider could verify about its configuration without starting a conversation.

use std::fmt;

/// The outcome of [`Provider::check`](crate::Provider::check): what was verified against
/// the contact center, and what could not be without starting a conversation (so a
/// `check` that passes never claims more than it proved).
///
/// ```
/// use handover_core::CheckReport;
///
/// let report = CheckReport::new()
///     .verified("the API token, the account and the inbox")
///     .unverified("the webhook secret: only a delivery from the desk proves it");
/// assert_eq!(report.verified_items().len(), 1);
/// assert!(report.to_string().contains("not verified"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckReport {
    verified: Vec<String>,
    unverified: Vec<String>,
}

impl CheckReport {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds something the check proved.
    #[must_use]
    pub fn verified(mut self, what: impl Into<String>) -> Self {
        self.verified.push(what.into());
        self
    }

    /// Adds something the check could not prove, and why.
    #[must_use]
    pub fn unverified(mut self, what: impl Into<String>) -> Self {
        self.unverified.push(what.into());
        self
    }

    /// What the check proved.
    pub fn verified_items(&self) -> &[String] {
        &self.verified
    }

    /// What the check could not prove.
    pub fn unverified_items(&self) -> &[String] {
        &self.unverified
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for item in &self.verified {
            writeln!(f, "  verified: {item}")?;
        }
        for item in &self.unverified {
            writeln!(f, "  not verified: {item}")?;
        }
        Ok(())
    }
}
