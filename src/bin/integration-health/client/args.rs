//! What `query` accepts on the command line: its subcommands, and the values of their flags
//! with what each means on the wire.

use clap::{Args, Subcommand, ValueEnum};
use integration_health::api::convert::type_to_wire;
use integration_health::event::IntegrationType;
use integration_health::proto;
use integration_health::query::{FailureOrder, Granularity};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TypeArg {
    InboundWebhook,
    OutboundWebhook,
    PrebuiltIntegration,
    CustomNode,
    CustomEvent,
}

impl From<TypeArg> for IntegrationType {
    fn from(t: TypeArg) -> Self {
        match t {
            TypeArg::InboundWebhook => IntegrationType::InboundWebhook,
            TypeArg::OutboundWebhook => IntegrationType::OutboundWebhook,
            TypeArg::PrebuiltIntegration => IntegrationType::PrebuiltIntegration,
            TypeArg::CustomNode => IntegrationType::CustomNode,
            TypeArg::CustomEvent => IntegrationType::CustomEvent,
        }
    }
}

/// Integration types as the wire names them.
pub fn types_of(types: &[TypeArg]) -> Vec<i32> {
    types.iter().map(|t| type_to_wire((*t).into())).collect()
}

#[derive(Debug, Args)]
pub struct Scope {
    #[arg(long)]
    pub tenant: String,
    /// Start of the range (RFC 3339), or how far back from now: 90m, 24h, 7d, 90d, 1y.
    #[arg(long)]
    pub since: Option<String>,
    /// End of the range (RFC 3339); default now.
    #[arg(long)]
    pub until: Option<String>,
    /// Only these integration types (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub types: Vec<TypeArg>,
}

/// An error class (docs/events.md lists each code's).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ClassArg {
    Auth,
    RateLimited,
    ProviderUnavailable,
    Config,
    Client,
}

impl From<ClassArg> for proto::ErrorClass {
    fn from(c: ClassArg) -> Self {
        match c {
            ClassArg::Auth => proto::ErrorClass::Auth,
            ClassArg::RateLimited => proto::ErrorClass::RateLimited,
            ClassArg::ProviderUnavailable => proto::ErrorClass::ProviderUnavailable,
            ClassArg::Config => proto::ErrorClass::Config,
            ClassArg::Client => proto::ErrorClass::Client,
        }
    }
}

/// The `--class` flag of the commands that can keep to some error classes.
#[derive(Debug, Args)]
pub struct ClassScope {
    /// Only failures of these error classes (comma-separated); every class when absent.
    #[arg(long = "class", value_enum, value_delimiter = ',')]
    pub classes: Vec<ClassArg>,
}

impl ClassScope {
    pub fn to_wire(&self) -> Vec<i32> {
        self.classes
            .iter()
            .map(|c| proto::ErrorClass::from(*c) as i32)
            .collect()
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GranularityArg {
    Hour,
    Day,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum IssueStateArg {
    Open,
    Acknowledged,
    Resolved,
    Snoozed,
    Reopened,
}

impl From<IssueStateArg> for proto::IssueState {
    fn from(s: IssueStateArg) -> Self {
        match s {
            IssueStateArg::Open => proto::IssueState::Open,
            IssueStateArg::Acknowledged => proto::IssueState::Acknowledged,
            IssueStateArg::Resolved => proto::IssueState::Resolved,
            IssueStateArg::Snoozed => proto::IssueState::Snoozed,
            IssueStateArg::Reopened => proto::IssueState::Reopened,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum IssueActionArg {
    Ack,
    Resolve,
    Snooze,
    Reopen,
}

impl From<IssueActionArg> for proto::IssueAction {
    fn from(a: IssueActionArg) -> Self {
        match a {
            IssueActionArg::Ack => proto::IssueAction::Acknowledge,
            IssueActionArg::Resolve => proto::IssueAction::Resolve,
            IssueActionArg::Snooze => proto::IssueAction::Snooze,
            IssueActionArg::Reopen => proto::IssueAction::Reopen,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum IntegrationOrderArg {
    Failures,
    FailureRate,
    P99,
    Name,
}

impl From<IntegrationOrderArg> for proto::IntegrationOrder {
    fn from(o: IntegrationOrderArg) -> Self {
        match o {
            IntegrationOrderArg::Failures => proto::IntegrationOrder::FailuresDesc,
            IntegrationOrderArg::FailureRate => proto::IntegrationOrder::FailureRateDesc,
            IntegrationOrderArg::P99 => proto::IntegrationOrder::P99Desc,
            IntegrationOrderArg::Name => proto::IntegrationOrder::NameAsc,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OrderArg {
    Total,
    LastSeen,
}

impl From<GranularityArg> for Granularity {
    fn from(g: GranularityArg) -> Self {
        match g {
            GranularityArg::Hour => Granularity::Hour,
            GranularityArg::Day => Granularity::Day,
        }
    }
}

impl From<OrderArg> for FailureOrder {
    fn from(o: OrderArg) -> Self {
        match o {
            OrderArg::Total => FailureOrder::TotalErrorsDesc,
            OrderArg::LastSeen => FailureOrder::LastSeenDesc,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum QueryCommand {
    /// Failed and successful transactions per integration type (the donut).
    Overview(Scope),
    /// Counts for a period against the period before it.
    Change {
        #[arg(long)]
        tenant: String,
        /// Period length: 1d, 7d, 30d, 12h ...
        #[arg(long, default_value = "1d")]
        period: String,
        /// End of the current period (RFC 3339); default now.
        #[arg(long)]
        end: Option<String>,
        #[arg(long, value_delimiter = ',')]
        types: Vec<TypeArg>,
        /// Also list the integrations and codes that drove each type's change in failures.
        #[arg(long)]
        drivers: bool,
    },
    /// Failures per status code.
    Errors(Scope),
    /// Failures per type per hour or day.
    Trends {
        #[command(flatten)]
        scope: Scope,
        #[arg(long, value_enum, default_value = "day")]
        granularity: GranularityArg,
        /// IANA time zone for day buckets.
        #[arg(long, default_value = "UTC")]
        tz: String,
        #[command(flatten)]
        classes: ClassScope,
    },
    /// The failures table.
    Failures {
        #[command(flatten)]
        scope: Scope,
        #[arg(long)]
        integration: Option<String>,
        #[arg(long)]
        code: Option<u32>,
        #[arg(long)]
        flow: Option<String>,
        #[arg(long)]
        service: Option<String>,
        #[command(flatten)]
        classes: ClassScope,
        #[arg(long, default_value_t = 20)]
        page_size: u32,
        #[arg(long)]
        page_token: Option<String>,
        #[arg(long, value_enum, default_value = "total")]
        order: OrderArg,
    },
    /// One failure group: guidance, hourly trend, recent samples.
    Failure {
        failure_id: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        since: Option<String>,
    },
    /// The catalog of common errors and their fixes.
    Catalog {
        #[arg(long = "type", value_enum)]
        integration_type: Option<TypeArg>,
        #[arg(long)]
        code: Option<u32>,
    },
    /// One row per integration: failure rate, latency percentiles, last failure, sparkline.
    Integrations {
        #[command(flatten)]
        scope: Scope,
        #[command(flatten)]
        classes: ClassScope,
        #[arg(long, value_enum, default_value = "failures")]
        order: IntegrationOrderArg,
        #[arg(long, default_value_t = 20)]
        page_size: u32,
        #[arg(long)]
        page_token: Option<String>,
    },
    /// One integration: volume, failure rate and latency over time, its codes and top groups.
    Integration {
        integration_id: String,
        #[arg(long)]
        tenant: String,
        /// Needed only when the id is used by more than one type.
        #[arg(long = "type", value_enum)]
        integration_type: Option<TypeArg>,
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_enum, default_value = "day")]
        granularity: GranularityArg,
        #[arg(long, default_value = "UTC")]
        tz: String,
    },
    /// Print an update whenever the tenant's counters move, until ctrl-c.
    Watch {
        #[arg(long)]
        tenant: String,
        /// At most one update per this interval: 500ms, 1s, 1m.
        #[arg(long, default_value = "1s")]
        interval: String,
    },
    /// Failure groups as issues, with their state; filter with --state.
    Issues {
        #[command(flatten)]
        scope: Scope,
        #[arg(long, value_enum, value_delimiter = ',')]
        state: Vec<IssueStateArg>,
        #[arg(long)]
        code: Option<u32>,
        #[command(flatten)]
        classes: ClassScope,
        #[arg(long, default_value_t = 20)]
        page_size: u32,
        #[arg(long)]
        page_token: Option<String>,
    },
    /// Acknowledge, resolve, snooze or reopen an issue (needs a token with write = true).
    Issue {
        #[arg(value_enum)]
        action: IssueActionArg,
        failure_id: String,
        #[arg(long)]
        tenant: String,
        /// Who acts, as it should be shown; default $USER.
        #[arg(long, env = "USER", default_value = "")]
        actor: String,
        #[arg(long, default_value = "")]
        note: String,
        /// For snooze: how long (90m, 4h, 2d) or until when (RFC 3339).
        #[arg(long = "for")]
        snooze: Option<String>,
    },
    /// Firing and recently resolved alerts; --watch prints each change as it is published;
    /// `alerts test` sends a test alert to one destination; `alerts dead-letters` lists what
    /// a destination did not take.
    Alerts {
        #[command(subcommand)]
        action: Option<AlertsAction>,
        /// One tenant; without it every tenant (needs an operator token).
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        watch: bool,
    },
    /// A tenant's alert rules, least specific first; with --effective, also the rules in force
    /// for the tenant, a type (--type) or one integration (--type and --integration), with
    /// where each field comes from.
    Rules(super::rules::RulesArgs),
    /// Set (or --delete) the alert rule of one kind for a tenant, a type or one integration;
    /// needs a token with alerts_admin = true.
    Rule(super::rules::RuleArgs),
    /// The tenants this token may read that have events in the range, busiest first.
    Tenants {
        /// Start: RFC 3339 or a span back from now (7d); default 30 days ago.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
    },
    /// Consumer positions, lag and event totals.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum AlertsAction {
    /// Send a test alert, signed and shaped as a real one, to one configured destination, once,
    /// and print how it answered; needs an operator token. Exits non-zero when not delivered.
    Test {
        /// The destination's name in alert_destinations.
        #[arg(long)]
        destination: String,
        /// The tenant the test alert is about (default integration-health-test); a destination
        /// limited to some tenants takes only theirs.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// A tenant's dead letters: alert changes a destination did not take after its last
    /// attempt, with the last error, newest first.
    DeadLetters {
        #[arg(long)]
        tenant: String,
        /// RFC 3339, or a span back from now like 24h or 7d (default 7d).
        #[arg(long)]
        since: Option<String>,
        /// At most this many (default and maximum 500).
        #[arg(long)]
        limit: Option<u32>,
    },
}
