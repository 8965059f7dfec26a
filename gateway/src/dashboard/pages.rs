//! What the dashboard shows: the sign-in form, the account's page (balance,
//! today's spend against the limit, top-ups, a 30-day spend chart, settings,
//! recent jobs, key rotation) and the job history, a page at a time.

use super::html::{dollars, escape, page};
use super::session::Session;
use crate::app::App;
use crate::error::ApiError;
use crate::handlers::account::history;
use gpubridge_billing::{AccountView, Accounts, PageStart, PACKAGES};
use gpubridge_protocol::AccountId;
use gpubridge_scheduler::{now_ms, JobRecord};

/// Jobs on a page of history.
pub const PAGE: usize = 25;

pub fn sign_in(token: &str, failed: Option<&str>) -> String {
    let failed = failed
        .map(|m| format!("<section class=error><p>{}</p></section>", escape(m)))
        .unwrap_or_default();
    page(
        "Sign in",
        &format!(
            "<h1>GPU-Bridge</h1>{failed}<section><h2>Sign in</h2>\
             <form method=post action=/account/dashboard/login>\
             <input type=hidden name=csrf value=\"{}\">\
             <label>Email <input name=email type=email autocomplete=username required></label>\
             <label>API key <input name=api_key type=password autocomplete=current-password required></label>\
             <button type=submit>Sign in</button></form></section>\
             <p>No account yet? <code>POST /account/register</code> with your email gives you a key.</p>",
            escape(token)
        ),
    )
}

/// A form that posts `action` with the session's CSRF token.
fn form(session: &Session, action: &str, fields: &str, button: &str) -> String {
    format!(
        "<form method=post action=/account/dashboard/{action}>\
         <input type=hidden name=csrf value=\"{}\">{fields}<button type=submit>{button}</button></form>",
        escape(&session.csrf)
    )
}

fn package_options(selected: &str) -> String {
    PACKAGES
        .iter()
        .map(|p| {
            let chosen = if p.key == selected { " selected" } else { "" };
            format!(
                "<option value={}{chosen}>{} for {}</option>",
                p.key,
                dollars(p.credits.as_dollars()),
                dollars(p.price.as_dollars())
            )
        })
        .collect()
}

/// The account's page.
pub async fn home(
    app: &App,
    accounts: &Accounts,
    session: &Session,
    notice: Option<&str>,
) -> Result<String, ApiError> {
    let view = accounts
        .view(session.account)
        .map_err(crate::access::account_error)?;
    let (jobs, _) = history(app, accounts, session.account, PageStart::Offset(0), 10).await?;
    let notice = notice
        .map(|n| format!("<section class=notice><p>{}</p></section>", escape(n)))
        .unwrap_or_default();
    let body = [
        format!("<h1>GPU-Bridge</h1><p>{}</p>{notice}", escape(&view.email)),
        money(&view),
        topups(app, session),
        chart(accounts, session.account),
        money_lines(accounts, session.account).await?,
        settings(session, &view),
        format!(
            "<h2>Recent jobs</h2>{}<p><a href=/account/dashboard/jobs>All jobs</a></p>",
            jobs_table(&jobs)
        ),
        webhook_secret(app, session),
        key_and_sign_out(session),
    ]
    .concat();
    Ok(page("Dashboard", &body))
}

fn money(view: &AccountView) -> String {
    let balance = view.balance.as_dollars() - view.debt.as_dollars();
    let class = if balance < 0.0 { " neg" } else { "" };
    let debt = match view.debt.0 > 0 {
        true => "<p class=neg>Refunds or disputes took back credits already spent: paid jobs are refused until a top-up covers this.</p>",
        false => "",
    };
    format!(
        "<section><div>Balance</div><div class=\"big{class}\" id=balance>{}</div>{debt}\
         <p>Today: <span id=daily-spend>{}</span> of your <span id=daily-limit>{}</span> daily limit · \
         {} tier ({}% off)</p></section>",
        dollars(balance),
        dollars(view.daily_spend.as_dollars()),
        dollars(view.daily_limit.as_dollars()),
        escape(&view.tier),
        f64::from(view.discount_bps) / 100.0
    )
}

fn topups(app: &App, session: &Session) -> String {
    let select = format!(
        "<label>Package <select name=package>{}</select></label>",
        package_options("credits_25")
    );
    let ways = [
        (app.cards.is_some(), "topup", "Pay by card"),
        (
            app.deposits.is_some(),
            "topup-crypto",
            "Pay with USDC on Base",
        ),
    ];
    let forms: String = ways
        .iter()
        .filter(|(on, _, _)| *on)
        .map(|(_, action, button)| {
            format!(
                "<section>{}</section>",
                form(session, action, &select, button)
            )
        })
        .collect();
    match forms.is_empty() {
        true => "<h2>Top up</h2><section><p>Top-ups are not enabled on this deployment; the operator adds credits.</p></section>".into(),
        false => format!("<h2>Top up</h2>{forms}"),
    }
}

fn chart(accounts: &Accounts, account: AccountId) -> String {
    let charges: Vec<(u32, f64)> = accounts
        .daily_charges(account)
        .into_iter()
        .map(|(day, m)| (day, m.as_dollars()))
        .collect();
    let today = (now_ms() / 86_400_000) as u32;
    format!(
        "<h2>Spend, last 30 days</h2><section>{}</section>",
        super::chart::spend(&charges, today)
    )
}

/// Money in and taken back: top-ups, grants, refunds.
async fn money_lines(accounts: &Accounts, account: AccountId) -> Result<String, ApiError> {
    let lines = accounts
        .money_lines(account, 10)
        .await
        .map_err(crate::access::account_error)?;
    if lines.is_empty() {
        return Ok("<h2>Credits</h2><section><p>No credits yet.</p></section>".into());
    }
    let rows: String = lines
        .iter()
        .map(|entry| {
            let amount = match entry.kind {
                gpubridge_billing::EntryKind::Debit => -entry.amount.as_dollars(),
                _ => entry.amount.as_dollars(),
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(
                    &humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + std::time::Duration::from_millis(entry.at_ms)
                    )
                    .to_string()
                ),
                dollars(amount),
                escape(entry.note.as_deref().unwrap_or(""))
            )
        })
        .collect();
    Ok(format!(
        "<h2>Credits</h2><div class=scroll><table id=ledger><thead><tr><th>When</th><th>Amount</th>         <th>What</th></tr></thead><tbody>{rows}</tbody></table></div>"
    ))
}

fn settings(session: &Session, view: &AccountView) -> String {
    let limit = format!(
        "<label>Daily limit (dollars) <input name=daily_limit type=number min=1 max=10000 step=0.01 value=\"{:.2}\"></label>",
        view.daily_limit.as_dollars()
    );
    let auto = view.auto_topup.as_ref();
    let checked = if auto.is_some_and(|a| a.enabled) {
        " checked"
    } else {
        ""
    };
    let threshold = auto.map_or(5.0, |a| a.threshold.as_dollars());
    let reason = auto
        .and_then(|a| a.disabled_reason.as_deref())
        .map(|r| {
            format!(
                "<p class=neg id=auto-topup-off>Turned off: {}</p>",
                escape(r)
            )
        })
        .unwrap_or_default();
    let fields = format!(
        "{reason}<label><input type=checkbox name=enabled value=true{checked}> Top up automatically by card</label>\
         <label>When the balance falls below (dollars) <input name=threshold type=number min=0.01 step=0.01 value=\"{threshold:.2}\"></label>\
         <label>Buy <select name=package>{}</select></label>",
        package_options(auto.map_or("credits_10", |a| a.package.as_str()))
    );
    format!(
        "<h2>Settings</h2><section>{}</section><section>{}</section>",
        form(session, "limit", &limit, "Save limit"),
        form(session, "auto-topup", &fields, "Save automatic top-up")
    )
}

/// The secret that signs the account's webhooks, and a way to replace it.
fn webhook_secret(app: &App, session: &Session) -> String {
    let secret = app.webhooks.account_secret(session.account);
    format!(
        "<h2>Webhooks</h2><section><p>Deliveries to your <code>webhook_url</code> are signed \
         (<code>X-GPUBridge-Signature</code>) with this secret:</p><p><code id=webhook-secret>{}</code></p>{}</section>",
        escape(secret.as_str()),
        form(session, "webhook-secret", "", "Rotate webhook secret")
    )
}

fn key_and_sign_out(session: &Session) -> String {
    format!(
        "<h2>API key</h2><section><p>A new key stops the current one at once, everywhere, and signs you out.</p>{}</section>\
         <section>{}</section>",
        form(session, "rotate-key", "", "Rotate API key"),
        form(session, "logout", "", "Sign out")
    )
}

/// Jobs as a table: service, backend, status, cost, refund, time.
pub fn jobs_table(jobs: &[JobRecord]) -> String {
    if jobs.is_empty() {
        return "<p>No jobs yet.</p>".into();
    }
    let rows: String = jobs
        .iter()
        .map(|job| {
            let settled = job.billing.as_ref().and_then(|b| b.settled);
            let money = |m: Option<gpubridge_protocol::Micros>| {
                m.map_or("—".into(), |m| dollars(m.as_dollars()))
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&job.service),
                escape(job.backend.as_deref().unwrap_or("—")),
                job.status.as_str(),
                money(settled.map(|s| s.charged)),
                money(settled.map(|s| s.refunded)),
                job.execution_seconds()
                    .map_or("—".into(), |s| format!("{s:.2} s")),
            )
        })
        .collect();
    format!(
        "<div class=scroll><table><thead><tr><th>Service</th><th>Backend</th><th>Status</th>\
         <th>Cost</th><th>Refund</th><th>Time</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )
}

/// The history, `PAGE` jobs from `offset`.
pub async fn jobs(
    app: &App,
    accounts: &Accounts,
    session: &Session,
    offset: u64,
) -> Result<String, ApiError> {
    let (jobs, next) = history(
        app,
        accounts,
        session.account,
        PageStart::Offset(offset),
        PAGE,
    )
    .await?;
    let mut links = Vec::new();
    if offset > 0 {
        links.push(format!(
            "<a href=\"/account/dashboard/jobs?offset={}\">Newer</a>",
            offset.saturating_sub(PAGE as u64)
        ));
    }
    if next.is_some() {
        links.push(format!(
            "<a href=\"/account/dashboard/jobs?offset={}\">Older</a>",
            offset + PAGE as u64
        ));
    }
    Ok(page(
        "Jobs",
        &format!(
            "<h1>Jobs</h1><p><a href=/account/dashboard>Dashboard</a></p>{}<p>{}</p>",
            jobs_table(&jobs),
            links.join(" · ")
        ),
    ))
}

/// Shown once after a rotation: the new key.
pub fn new_key(api_key: &str) -> String {
    page(
        "New API key",
        &format!(
            "<h1>Your new API key</h1><section class=notice><p>Store it now: it is shown only this once. \
             The previous key no longer works, and every dashboard session has ended.</p>\
             <p><code id=new-key>{}</code></p></section><p><a href=/account/dashboard>Sign in again</a></p>",
            escape(api_key)
        ),
    )
}

/// Where and how much to send for a USDC top-up.
pub fn crypto_topup(opened: &crate::views::TopupOpened) -> String {
    let decimals = u32::from(opened.asset_decimals);
    let atomic: u128 = opened.topup.amount_atomic.parse().unwrap_or(0);
    let scale = 10u128.pow(decimals);
    let amount = format!(
        "{}.{:0width$}",
        atomic / scale,
        atomic % scale,
        width = decimals as usize
    );
    page(
        "USDC top-up",
        &format!(
            "<h1>Send exactly {} USDC</h1><section><p>To <code>{}</code> on {} (chain {}), before {}.</p>\
             <p>Asset <code>{}</code>. Another amount is not matched to this top-up.</p></section>\
             <p><a href=/account/dashboard>Back to the dashboard</a></p>",
            escape(&amount),
            escape(&opened.pay_to),
            escape(&opened.network),
            opened.chain_id,
            escape(&opened.topup.expires_at),
            escape(&opened.asset)
        ),
    )
}
