//! The integration types and a fixed-size array indexed by them.

use std::fmt;
use std::ops::{Index, IndexMut};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IntegrationType {
    InboundWebhook,
    OutboundWebhook,
    PrebuiltIntegration,
    CustomNode,
    CustomEvent,
}

impl IntegrationType {
    pub(crate) const COUNT: usize = 5;

    pub const ALL: [IntegrationType; Self::COUNT] = [
        IntegrationType::InboundWebhook,
        IntegrationType::OutboundWebhook,
        IntegrationType::PrebuiltIntegration,
        IntegrationType::CustomNode,
        IntegrationType::CustomEvent,
    ];

    /// Dense index for per-type counter arrays.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationType::InboundWebhook => "inbound_webhook",
            IntegrationType::OutboundWebhook => "outbound_webhook",
            IntegrationType::PrebuiltIntegration => "prebuilt_integration",
            IntegrationType::CustomNode => "custom_node",
            IntegrationType::CustomEvent => "custom_event",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            IntegrationType::InboundWebhook => "Inbound Webhooks",
            IntegrationType::OutboundWebhook => "Outbound Webhooks",
            IntegrationType::PrebuiltIntegration => "Pre-built Integrations",
            IntegrationType::CustomNode => "Custom Nodes",
            IntegrationType::CustomEvent => "Custom Events",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

impl fmt::Display for IntegrationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One value per integration type, indexed by the type itself.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct PerType<T>(pub [T; IntegrationType::COUNT]);

impl<T> PerType<T> {
    pub(crate) fn values(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (IntegrationType, &T)> {
        IntegrationType::ALL.into_iter().zip(self.0.iter())
    }

    pub(crate) fn map<U>(self, f: impl FnMut(T) -> U) -> PerType<U> {
        PerType(self.0.map(f))
    }
}

impl<T> Index<IntegrationType> for PerType<T> {
    type Output = T;

    fn index(&self, t: IntegrationType) -> &T {
        &self.0[t.index()]
    }
}

impl<T> IndexMut<IntegrationType> for PerType<T> {
    fn index_mut(&mut self, t: IntegrationType) -> &mut T {
        &mut self.0[t.index()]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Failure,
}
