//! What clients see of jobs and accounts, as serializable types. Money leaves
//! as dollars here; stored outputs are embedded as they are, never re-parsed.

use gpubridge_billing::deposits::TopupRecord;
use gpubridge_billing::x402::X402Rules;
use gpubridge_billing::AccountView;
use gpubridge_protocol::JobId;
use gpubridge_scheduler::{now_ms, Attempt, JobPayment, JobRecord, Progress, Routing, Stopped};
use serde::Serialize;
use serde_json::value::RawValue;

pub fn status_url(id: &JobId) -> String {
    format!("/status/{id}")
}

/// A job's stored output as JSON, embedded verbatim.
fn output(record: &JobRecord) -> Option<&RawValue> {
    record
        .output
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
}

/// `POST /run` → 202.
#[derive(Serialize)]
pub struct RunAccepted<'a> {
    pub job_id: &'a JobId,
    pub service: &'a str,
    pub status: &'static str,
    pub status_url: String,
    pub estimated_cost_usd: f64,
    /// Signs this job's webhook when no account owns the job (x402, open
    /// access): shown only here. Account jobs use the account's secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

impl<'a> RunAccepted<'a> {
    pub fn of(record: &'a JobRecord) -> Self {
        RunAccepted {
            job_id: &record.id,
            service: &record.service,
            status: record.status.as_str(),
            status_url: status_url(&record.id),
            estimated_cost_usd: record.estimated_cost.as_dollars(),
            webhook_secret: None,
        }
    }
}

#[derive(Serialize)]
pub struct AttemptView<'a> {
    pub backend: &'a str,
    pub duration_ms: u64,
    pub error: Option<&'a str>,
}

impl<'a> From<&'a Attempt> for AttemptView<'a> {
    fn from(a: &'a Attempt) -> Self {
        AttemptView {
            backend: &a.backend,
            duration_ms: a.duration_ms,
            error: a.error.as_deref(),
        }
    }
}

/// `GET /status/:id`. With `full`, output or error, backend, attempts and
/// charges; otherwise status, timing and a hint.
#[derive(Serialize)]
pub struct StatusView<'a> {
    pub id: &'a JobId,
    pub status: &'static str,
    pub service: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_time_seconds: Option<f64>,
    pub created_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
    pub estimated_cost_usd: f64,
    /// When retention removed the job's input and output; its summary stays.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expired_at_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<&'static str>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub full: Option<FullStatus<'a>>,
    /// How the job's webhook delivery stands (owner's view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookView>,
    /// A job no account owns, answered at once by `POST /run` with `Prefer:
    /// wait`: the secret that signs its webhook, shown only there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

/// `webhook` in `/status`: `state` is `waiting_for_job` until the job ends,
/// then `pending`, `delivered`, `gone` (the receiver answered 410) or `gave_up`.
#[derive(Serialize)]
pub struct WebhookView {
    pub state: &'static str,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl WebhookView {
    pub fn of(delivery: Option<&gpubridge_webhooks::Delivery>) -> WebhookView {
        let at = |ms: Option<u64>| ms.map(rfc3339_ms);
        match delivery {
            None => WebhookView {
                state: "waiting_for_job",
                attempts: 0,
                delivered_at: None,
                next_attempt_at: None,
                last_status: None,
                last_error: None,
            },
            Some(d) => WebhookView {
                state: d.state.as_str(),
                attempts: d.attempts,
                delivered_at: at(d.delivered_ms),
                next_attempt_at: at(d.next_attempt_ms),
                last_status: d.last_status,
                last_error: d.last_error.clone(),
            },
        }
    }
}

fn rfc3339_ms(ms: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(time).to_string()
}

/// What a job's webhook carries: its status document as its owner sees it.
pub fn webhook_body(record: &JobRecord) -> Vec<u8> {
    serde_json::to_vec(&StatusView::of(record, true)).unwrap_or_default()
}

#[derive(Serialize)]
pub struct FullStatus<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    /// Present (maybe `null`) once a terminal job has no error, and for a job
    /// stopped mid-stream, what it delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Option<&'a RawValue>>,
    /// Set when the job stopped because its client left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<&'a Stopped>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<&'a str>,
    /// How far a running job is, as its backend last said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressView<'a>>,
    /// Which backend was chosen and why, with its expected and actual cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingView<'a>>,
    pub attempts: Vec<AttemptView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recoveries: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<&'a str>,
    #[serde(flatten)]
    pub settlement: SettlementView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentView<'a>>,
}

#[derive(Serialize)]
pub struct ProgressView<'a> {
    pub percent: f64,
    pub message: &'a str,
    pub updated_at_ms: u64,
}

impl<'a> From<&'a Progress> for ProgressView<'a> {
    fn from(p: &'a Progress) -> Self {
        ProgressView {
            percent: f64::from(p.permille) / 10.0,
            message: &p.message,
            updated_at_ms: p.at_ms,
        }
    }
}

/// The backend of the latest attempt: `cheap` picks the lowest expected cost
/// (its price per second × the duration learned for it), `fast` the soonest
/// result. Costs are the backend's, not the job's price.
#[derive(Serialize)]
pub struct RoutingView<'a> {
    pub priority: &'static str,
    pub backend: &'a str,
    pub backend_cost_per_second_usd: f64,
    pub expected_seconds: f64,
    pub expected_cost_usd: f64,
    /// Once it ran to an end: the backend's price × the seconds it took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual_cost_usd: Option<f64>,
}

impl<'a> RoutingView<'a> {
    fn of(record: &JobRecord, routing: &'a Routing) -> Self {
        RoutingView {
            priority: record.priority.as_str(),
            backend: &routing.backend,
            backend_cost_per_second_usd: routing.cost_per_second.as_dollars(),
            expected_seconds: routing.expected_ms / 1000.0,
            expected_cost_usd: routing.expected_cost.as_dollars(),
            actual_cost_usd: record
                .execution_us
                .map(|us| routing.actual_cost(us).as_dollars()),
        }
    }
}

/// How an x402 job was paid, and whether its payment may pay for a retry.
#[derive(Serialize)]
pub struct PaymentView<'a> {
    pub scheme: &'a str,
    pub payer: &'a str,
    pub amount_atomic: &'a str,
    pub transaction: &'a str,
    /// This job is the retry its payment allowed after a failure.
    pub is_retry: bool,
    /// The job failed everywhere: until then the same payment pays for one
    /// retry of the same service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_until_ms: Option<u64>,
}

impl<'a> From<&'a JobPayment> for PaymentView<'a> {
    fn from(p: &'a JobPayment) -> Self {
        PaymentView {
            scheme: &p.scheme,
            payer: &p.payer,
            amount_atomic: &p.amount_atomic,
            transaction: &p.transaction,
            is_retry: p.retry,
            retry_until_ms: p.retry_until_ms,
        }
    }
}

/// What a billed job cost once settled; `null` before (or when nobody pays).
#[derive(Serialize)]
pub struct SettlementView {
    pub charged_usd: Option<f64>,
    pub refunded_usd: Option<f64>,
}

impl SettlementView {
    fn of(record: &JobRecord) -> Self {
        let settled = record.billing.as_ref().and_then(|b| b.settled);
        SettlementView {
            charged_usd: settled.map(|s| s.charged.as_dollars()),
            refunded_usd: settled.map(|s| s.refunded.as_dollars()),
        }
    }
}

impl<'a> StatusView<'a> {
    pub fn of(record: &'a JobRecord, full: bool) -> Self {
        StatusView {
            id: &record.id,
            status: record.status.as_str(),
            service: &record.service,
            execution_time_seconds: record.execution_seconds(),
            created_at_ms: record.created_ms,
            started_at_ms: record.started_ms,
            finished_at_ms: record.finished_ms,
            estimated_cost_usd: record.estimated_cost.as_dollars(),
            expired_at_ms: record.expired_ms,
            hint: match (full, record.expired_ms) {
                (_, Some(_)) => Some(
                    "This job's input and output were deleted once its retention period ended; \
                     its summary stays in the account's history.",
                ),
                (false, None) => Some("Pass the API key that created this job to see its output."),
                (true, None) => None,
            },
            full: full.then(|| FullStatus::of(record)),
            webhook: None,
            webhook_secret: None,
        }
    }
}

impl<'a> FullStatus<'a> {
    fn of(record: &'a JobRecord) -> Self {
        let terminal = record.status.is_terminal();
        FullStatus {
            model: record.model.as_deref(),
            error: record.error.as_deref().filter(|_| terminal),
            output: (terminal
                && record.expired_ms.is_none()
                && (record.error.is_none() || record.output.is_some()))
            .then(|| output(record)),
            stopped: record.stopped.as_ref(),
            backend: record.backend.as_deref(),
            progress: record.progress.as_ref().map(ProgressView::from),
            routing: record.routing.as_ref().map(|r| RoutingView::of(record, r)),
            attempts: record.attempts.iter().map(AttemptView::from).collect(),
            recoveries: (record.recoveries > 0).then_some(record.recoveries),
            webhook_url: record.webhook_url.as_deref(),
            settlement: SettlementView::of(record),
            payment: record.payment.as_ref().map(PaymentView::from),
        }
    }
}

/// One row of `GET /account/jobs`.
#[derive(Serialize)]
pub struct HistoryItem<'a> {
    pub job_id: &'a JobId,
    pub service: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
    pub status: &'static str,
    pub created_at_ms: u64,
    pub estimated_cost_usd: f64,
    #[serde(flatten)]
    pub settlement: SettlementView,
    pub execution_time_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

impl<'a> HistoryItem<'a> {
    pub fn of(record: &'a JobRecord) -> Self {
        HistoryItem {
            job_id: &record.id,
            service: &record.service,
            model: record.model.as_deref(),
            status: record.status.as_str(),
            created_at_ms: record.created_ms,
            estimated_cost_usd: record.estimated_cost.as_dollars(),
            settlement: SettlementView::of(record),
            execution_time_seconds: record.execution_seconds(),
            error: record.error.as_deref(),
        }
    }
}

/// `GET /account/jobs`: a page of history and how to get the next.
#[derive(Serialize)]
pub struct HistoryPageView<'a> {
    pub jobs: Vec<HistoryItem<'a>>,
    pub limit: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    pub count: usize,
    /// Pass as `cursor` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
    /// The account's latest USDC top-ups, when they are on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crypto_topups: Option<Vec<TopupView>>,
}

/// `POST /inference`: inline output when done, else where to poll.
#[derive(Serialize)]
pub struct InferenceView<'a> {
    pub job_id: &'a JobId,
    pub status: &'static str,
    pub status_url: String,
    pub estimated_cost_usd: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Option<&'a RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_time_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<&'a str>,
    /// For a failed job: why, and what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<&'static str>,
}

impl<'a> InferenceView<'a> {
    pub fn of(record: &'a JobRecord) -> Self {
        let failed = record.status == gpubridge_protocol::JobStatus::Failed;
        InferenceView {
            job_id: &record.id,
            status: record.status.as_str(),
            status_url: status_url(&record.id),
            estimated_cost_usd: record.estimated_cost.as_dollars(),
            output: (record.status.is_terminal() && record.error.is_none()).then(|| output(record)),
            execution_time_seconds: record.execution_seconds(),
            model: record.model.as_deref(),
            backend: record.backend.as_deref(),
            error: failed.then(|| record.error.as_deref().unwrap_or("the job failed")),
            hint: failed.then_some(
                "Every candidate backend failed; details are in error. Retry, or pick another model from GET /catalog.",
            ),
        }
    }
}

#[derive(Serialize)]
pub struct DiscountView {
    pub tier: String,
    pub discount_percent: f64,
}

/// An account in the shape of `GET /account/balance`, plus what explains it.
#[derive(Serialize)]
pub struct AccountBody {
    /// Below zero when refunds or disputes took back credits already spent:
    /// paid jobs are refused until a top-up covers it.
    pub balance: f64,
    pub email: String,
    pub daily_spend: f64,
    pub daily_limit: f64,
    pub volume_discount: DiscountView,
    pub trailing_30d_spend: f64,
    pub open_reservations: f64,
    pub credits: f64,
    /// Taken back from card payments (refunds, disputes).
    pub debits: f64,
    pub charges: f64,
    pub account_id: String,
    pub created_at_ms: u64,
    /// The account's latest USDC top-ups, when they are on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crypto_topups: Option<Vec<TopupView>>,
    /// Buying credits by card below a threshold, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_topup: Option<AutoTopupView>,
}

impl From<AccountView> for AccountBody {
    fn from(view: AccountView) -> Self {
        AccountBody {
            balance: view.balance.as_dollars() - view.debt.as_dollars(),
            email: view.email,
            daily_spend: view.daily_spend.as_dollars(),
            daily_limit: view.daily_limit.as_dollars(),
            volume_discount: DiscountView {
                tier: view.tier,
                discount_percent: f64::from(view.discount_bps) / 100.0,
            },
            trailing_30d_spend: view.trailing_30d_spend.as_dollars(),
            open_reservations: view.open_reservations.as_dollars(),
            credits: view.credits.as_dollars(),
            debits: view.debits.as_dollars(),
            charges: view.charges.as_dollars(),
            account_id: view.id.to_string(),
            created_at_ms: view.created_ms,
            crypto_topups: None,
            auto_topup: view.auto_topup.as_ref().map(AutoTopupView::from),
        }
    }
}

/// `POST /account/register` → 201: the account and its key, shown once.
#[derive(Serialize)]
pub struct Registered {
    #[serde(flatten)]
    pub account: AccountBody,
    pub api_key: String,
    /// Signs this account's webhooks; readable again at /account/webhook-secret.
    pub webhook_secret: String,
    pub message: &'static str,
}

/// `POST /account/topup` → 201: where to pay.
#[derive(Serialize)]
pub struct CheckoutOpened {
    pub checkout_url: String,
    pub session_id: String,
    pub package: &'static str,
    pub amount_usd: f64,
    pub credits_usd: f64,
}

impl CheckoutOpened {
    pub fn of(checkout: &gpubridge_billing::card::Checkout) -> Self {
        CheckoutOpened {
            checkout_url: checkout.checkout_url.clone(),
            session_id: checkout.session_id.clone(),
            package: checkout.package.key,
            amount_usd: checkout.package.price.as_dollars(),
            credits_usd: checkout.package.credits.as_dollars(),
        }
    }
}

/// `POST /account/auto-topup`, and `auto_topup` in `/account/balance`.
#[derive(Serialize)]
pub struct AutoTopupView {
    pub enabled: bool,
    pub threshold: f64,
    pub package: String,
    /// A card is saved for it (by a Checkout top-up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_saved: Option<bool>,
    /// Why it turned itself off (a declined card).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
}

impl AutoTopupView {
    pub fn of(settings: &gpubridge_billing::AutoTopup, card_saved: bool) -> Self {
        AutoTopupView {
            card_saved: Some(card_saved),
            ..AutoTopupView::from(settings)
        }
    }
}

impl From<&gpubridge_billing::AutoTopup> for AutoTopupView {
    fn from(settings: &gpubridge_billing::AutoTopup) -> Self {
        AutoTopupView {
            enabled: settings.enabled,
            threshold: settings.threshold.as_dollars(),
            package: settings.package.clone(),
            card_saved: None,
            disabled_reason: settings.disabled_reason.clone(),
        }
    }
}

/// `GET|POST /account/webhook-secret`.
#[derive(Serialize)]
pub struct WebhookSecretView {
    pub account_id: String,
    pub webhook_secret: String,
    pub signature_header: &'static str,
    /// This request replaced the previous secret.
    pub rotated: bool,
}

/// `POST /account/regenerate-key`.
#[derive(Serialize)]
pub struct KeyRotated {
    pub api_key: String,
    pub account_id: String,
    pub message: &'static str,
}

/// A fixed acknowledgement (`POST /account/recover`, drains).
#[derive(Serialize)]
pub struct Acknowledged<'a> {
    pub status: &'a str,
    pub message: &'a str,
}

/// `POST /account/topup-crypto` → 201: where to send exactly how much.
#[derive(Serialize)]
pub struct TopupOpened {
    #[serde(flatten)]
    pub topup: TopupView,
    pub pay_to: String,
    pub asset: String,
    pub network: String,
    pub chain_id: u64,
    pub asset_decimals: u8,
    pub hint: String,
}

impl TopupOpened {
    pub fn of(record: &TopupRecord, rules: &X402Rules, network: String) -> Self {
        TopupOpened {
            topup: TopupView::of(record),
            pay_to: rules.pay_to.to_string(),
            asset: rules.asset.to_string(),
            network,
            chain_id: rules.chain_id,
            asset_decimals: rules.asset_decimals,
            hint: format!(
                "Send exactly amount_atomic units of the asset to pay_to on chain {} before expires_at; the credits are added once the transfer is confirmed. Another amount is not matched: claim it with POST /account/topup-crypto/claim.",
                rules.chain_id
            ),
        }
    }
}

/// A USDC top-up as `/account/balance`, `/account/jobs` and its opening show it.
#[derive(Serialize)]
pub struct TopupView {
    pub topup_id: String,
    pub package: String,
    /// Exactly what to send, in the asset's atomic units.
    pub amount_atomic: String,
    pub credits_usd: f64,
    /// `awaiting_deposit`, `credited` or `expired`.
    pub status: &'static str,
    pub created_at_ms: u64,
    pub expires_at: String,
    pub expires_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credited_at_ms: Option<u64>,
}

impl TopupView {
    pub fn of(record: &TopupRecord) -> Self {
        let status = match (&record.credited, record.expires_ms < now_ms()) {
            (Some(_), _) => "credited",
            (None, true) => "expired",
            (None, false) => "awaiting_deposit",
        };
        TopupView {
            topup_id: record.id.clone(),
            package: record.package.clone(),
            amount_atomic: record.amount_atomic.clone(),
            credits_usd: record.credits.as_dollars(),
            status,
            created_at_ms: record.created_ms,
            expires_at: humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(record.expires_ms),
            )
            .to_string(),
            expires_at_ms: record.expires_ms,
            transaction: record.credited.as_ref().map(|c| c.transaction.clone()),
            credited_at_ms: record.credited.as_ref().map(|c| c.at_ms),
        }
    }
}

/// `POST /account/topup-crypto/claim` → 200.
#[derive(Serialize)]
pub struct TopupClaimed {
    pub credited_usd: f64,
    pub balance: f64,
    pub transaction: String,
}
