//! Who may run what, and how it is paid for. `Open` (accounts disabled): anyone,
//! nothing charged, a job's id is its read token. `Accounts`: an API key names
//! the account whose credits pay for each job; with x402 on, a request without
//! a key pays for itself in USDC and its job's id is its read token.

use crate::error::ApiError;
use crate::x402::{self as door, Payer};
use gpubridge_billing::x402::{PaidBy, PAYMENT_SIGNATURE, X402};
use gpubridge_billing::{AccountError, Accounts, Admission, AdmitError, IdempotencyClaim};
use gpubridge_protocol::AccountId;
use gpubridge_scheduler::{Driver, JobRecord, PreparedJob, Scheduler};
use gpubridge_store::WriteSet;
use hyper::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::http::Extensions;
use hyper::{HeaderMap, Request, StatusCode, Uri};
use serde_json::json;
use std::sync::Arc;

/// Who is calling, as far as the headers prove.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    pub account: Option<AccountId>,
    /// Set on the x402 path: no API key, x402 on.
    pub payer: Option<Payer>,
}

/// A request's API key as the rate limiter found it valid, before its route
/// ran: the route takes the account from here instead of hashing the key a
/// second time. Only ever set from the same request's `Authorization`.
#[derive(Clone, Copy, Debug)]
pub struct KeyChecked(pub AccountId);

/// What a request shows of who sent it: its headers, and the account the rate
/// limiter already found for its key.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub headers: &'a HeaderMap,
    pub known: Option<KeyChecked>,
}

impl<'a> Credentials<'a> {
    pub fn of<B>(request: &'a Request<B>) -> Credentials<'a> {
        Credentials::from_parts(request.headers(), request.extensions())
    }

    pub fn from_parts(headers: &'a HeaderMap, extensions: &Extensions) -> Credentials<'a> {
        Credentials {
            headers,
            known: extensions.get::<KeyChecked>().copied(),
        }
    }

    /// The same, once `account` has been found for this request's key: later
    /// checks take it instead of hashing the key again.
    pub fn with_account(self, account: Option<AccountId>) -> Credentials<'a> {
        Credentials {
            known: account.map(KeyChecked).or(self.known),
            ..self
        }
    }

    /// Headers alone, where the limiter's finding is not at hand.
    pub fn headers(headers: &'a HeaderMap) -> Credentials<'a> {
        Credentials {
            headers,
            known: None,
        }
    }
}

pub enum Access {
    /// Accounts disabled: everything is allowed and unowned.
    Open,
    /// API key + credits, and x402 for callers without a key when configured.
    Accounts {
        accounts: Arc<Accounts>,
        x402: Option<Arc<X402>>,
    },
}

/// An accepted job's admission, and the payment that paid for it on the x402 path.
pub struct Admitted {
    pub admission: Admission,
    pub paid: Option<PaidBy>,
    /// A job started unwritten runs as its waiting request polls this.
    pub driver: Option<Driver>,
}

impl Access {
    /// A bad credential is refused here; no credential is an anonymous caller.
    pub fn identify(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        self.identify_credentials(Credentials::headers(headers))
    }

    /// [`Access::identify`], given what the rate limiter already found.
    pub fn identify_credentials(&self, credentials: Credentials) -> Result<Caller, ApiError> {
        let Access::Accounts { accounts, .. } = self else {
            return Ok(Caller::default());
        };
        let Credentials { headers, known } = credentials;
        if let Some(KeyChecked(account)) = known {
            return Ok(Caller {
                account: Some(account),
                payer: None,
            });
        }
        let Some(token) = bearer(headers)? else {
            return Ok(Caller::default());
        };
        let account = accounts
            .authenticate(token)
            .ok_or_else(|| unauthorized("Invalid API key"))?;
        Ok(Caller {
            account: Some(account),
            payer: None,
        })
    }

    pub fn x402(&self) -> Option<&Arc<X402>> {
        match self {
            Access::Accounts { x402, .. } => x402.as_ref(),
            Access::Open => None,
        }
    }

    /// The x402 version a request's answers speak, when it is on the x402
    /// path: 2 when it pays with `PAYMENT-SIGNATURE`, else the contract's 1.
    pub fn x402_version(&self, headers: &HeaderMap) -> Option<u8> {
        if self.x402().is_none() || headers.contains_key(AUTHORIZATION) {
            return None;
        }
        Some(match headers.contains_key(PAYMENT_SIGNATURE) {
            true => 2,
            false => 1,
        })
    }

    /// [`Access::identify`] for a request that runs a job: without a key and
    /// with x402 on, also what it pays with.
    pub fn identify_payer(
        &self,
        credentials: Credentials,
        uri: &Uri,
        http: &crate::config::HttpConfig,
    ) -> Result<Caller, ApiError> {
        let mut caller = self.identify_credentials(credentials)?;
        let headers = credentials.headers;
        if caller.account.is_some() && door::has_payment(headers) {
            return Err(ApiError::bad_request(
                "Send either an API key or an x402 payment, not both",
                "With an API key your credits pay; drop X-Payment / PAYMENT-SIGNATURE. To pay per request, drop Authorization.",
            ));
        }
        if caller.account.is_none() && self.x402().is_some() {
            caller.payer = Some(Payer::from_request(headers, uri, http)?);
        }
        Ok(caller)
    }

    /// The caller's account, or 401.
    pub fn require(&self, headers: &HeaderMap) -> Result<AccountId, ApiError> {
        self.identify(headers)?
            .account
            .ok_or_else(|| unauthorized("API key required"))
    }

    /// Is this job started before anything is written, with nothing to pay?
    /// Only if its door shows its id late (`IntakeRequest::id_shown_late`).
    /// Idempotency-Key is per account (the contract), so without accounts no
    /// replay looks for the job; a webhook's job is written up front, as on /run.
    pub fn starts_unwritten(&self, job: &PreparedJob, id_shown_late: bool) -> bool {
        matches!(self, Access::Open) && id_shown_late && job.webhook_url.is_none()
    }

    /// Pays for and accepts one validated job.
    pub async fn accept(
        &self,
        scheduler: &Scheduler,
        caller: &Caller,
        job: PreparedJob,
        idempotency: Option<&IdempotencyClaim>,
        id_shown_late: bool,
    ) -> Result<Admitted, ApiError> {
        let (accounts, x402) = match self {
            Access::Open => {
                let (record, driver) = match self.starts_unwritten(&job, id_shown_late) {
                    true => scheduler
                        .start_unwritten(job)
                        .map(|(record, driver)| (record, Some(driver))),
                    false => scheduler
                        .submit(job, None, WriteSet::new())
                        .await
                        .map(|record| (record, None)),
                }
                .map_err(|e| ApiError::from_scheduler(scheduler, e))?;
                let mut admitted = Admitted::unpaid(Admission::Accepted(Box::new(record)));
                admitted.driver = driver;
                return Ok(admitted);
            }
            Access::Accounts { accounts, x402 } => (accounts, x402),
        };
        match (caller.account, &caller.payer, x402) {
            (Some(account), _, _) => accounts
                .admit(scheduler, account, job, idempotency)
                .await
                .map(Admitted::unpaid)
                .map_err(|e| match e {
                    AdmitError::Submit(e) => ApiError::from_scheduler(scheduler, e),
                    AdmitError::Account(e) => account_error(e),
                }),
            (None, Some(payer), Some(x402)) => pay_per_request(x402, scheduler, payer, job).await,
            (None, _, _) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "API key required",
                "Send Authorization: Bearer gpub_… with your API key; get one with POST /account/register. This deployment does not take x402 payments.",
            )
            .with_header(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))),
        }
    }

    /// May this caller see the job's output (not only its status)?
    pub fn may_read_output(&self, caller: &Caller, job: &JobRecord) -> bool {
        job.owner.is_none() || job.owner == caller.account
    }
}

impl Admitted {
    fn unpaid(admission: Admission) -> Admitted {
        Admitted {
            admission,
            paid: None,
            driver: None,
        }
    }
}

/// The x402 path: a 402 saying what to pay, or the job its payment pays for.
async fn pay_per_request(
    x402: &X402,
    scheduler: &Scheduler,
    payer: &Payer,
    job: PreparedJob,
) -> Result<Admitted, ApiError> {
    let offer = door::offer(x402, scheduler, &job, payer);
    let Some(payment) = &payer.payment else {
        return Err(door::unpaid(x402, &offer));
    };
    match x402.admit(scheduler, job, payment).await {
        Ok((record, paid)) => Ok(Admitted {
            admission: Admission::Accepted(Box::new(record)),
            paid: Some(paid),
            driver: None,
        }),
        Err(e) => Err(door::refused(x402, &offer, scheduler, e)),
    }
}

/// The bearer token of an `Authorization` header, if it has one.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("Malformed Authorization header"))?;
    Ok(Some(token))
}

pub fn unauthorized(error: &str) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::UNAUTHORIZED,
        error,
        "Send Authorization: Bearer gpub_… with your API key; get one with POST /account/register.",
    );
    e.headers
        .push((WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
    e
}

/// An account refusal in the spec's envelope.
pub fn account_error(error: AccountError) -> ApiError {
    let message = error.to_string();
    match error {
        AccountError::UnknownAccount => unauthorized("Invalid API key"),
        AccountError::BadEmail => ApiError::bad_request(
            "Invalid email address",
            "Send {\"email\": \"you@example.com\"}.",
        ),
        AccountError::EmailTaken(_) => ApiError::new(
            StatusCode::CONFLICT,
            "An account already exists for this email",
            "If you have its key, rotate it with POST /account/regenerate-key; if you lost it, use POST /account/recover {\"email\": …}.",
        ),
        AccountError::InsufficientCredits { balance, needed } => ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            format!("Insufficient credits: balance ${:.6}, this job needs ${:.6}", balance.as_dollars(), needed.as_dollars()),
            "Add credits, or pick a cheaper service or model (GET /catalog/estimate). Nothing was queued or charged.",
        )
        .with_details(json!({"balance_usd": balance.as_dollars(), "required_usd": needed.as_dollars()})),
        AccountError::DailyLimit { spent, limit, needed } => ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            format!("Daily spending limit reached: ${:.6} of ${:.2} spent today (UTC)", spent.as_dollars(), limit.as_dollars()),
            "Raise it with POST /account/spending-limit {\"daily_limit\": …}, or wait for the next UTC day. Nothing was queued or charged.",
        )
        .with_details(json!({"daily_spend_usd": spent.as_dollars(), "daily_limit_usd": limit.as_dollars(), "required_usd": needed.as_dollars()})),
        AccountError::IdempotencyConflict { job_id } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Idempotency-Key was already used with a different request",
            "Use a new Idempotency-Key for a new request; resend the original body to get the original job.",
        )
        .with_details(json!({"job_id": job_id})),
        AccountError::LimitOutOfRange => ApiError::bad_request(
            message,
            "Send {\"daily_limit\": 100} with a dollar amount from 1 to 10000.",
        ),
        AccountError::ZeroCredit => ApiError::bad_request(message, "Send a positive amount_usd."),
        AccountError::Store(e) => ApiError::from_store(&e, "Nothing was charged; retry shortly."),
        AccountError::Key(e) => {
            tracing::error!(error = %e, "API key generation failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Could not create a key right now",
                "Retry shortly.",
            )
            .retry_after(5)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers).unwrap(), None);
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer gpub_abc"));
        assert_eq!(bearer(&headers).unwrap(), Some("gpub_abc"));
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("bearer   gpub_abc "),
        );
        assert_eq!(bearer(&headers).unwrap(), Some("gpub_abc"));
        for bad in ["Basic dXNlcjpwdw==", "Bearer", "Bearer ", "gpub_abc"] {
            headers.insert(AUTHORIZATION, HeaderValue::from_static(bad));
            let e = bearer(&headers).unwrap_err();
            assert_eq!(e.status, StatusCode::UNAUTHORIZED, "{bad}");
        }
    }
}
