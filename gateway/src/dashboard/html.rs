//! HTML for the dashboard: escaping for everything a user controls, the page
//! frame (inline styles, no scripts, no external assets, phone-width first),
//! and answering with a page.

use crate::app::HttpResponse;
use crate::outgoing::Outgoing;
use bytes::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Dollars for people: `$26.25`, `-$0.003`.
pub fn dollars(amount: f64) -> String {
    let sign = if amount < 0.0 { "-" } else { "" };
    let abs = amount.abs();
    match abs >= 0.01 || abs == 0.0 {
        true => format!("{sign}${abs:.2}"),
        false => format!("{sign}${abs:.4}"),
    }
}

const STYLE: &str = "body{font:16px/1.45 system-ui,sans-serif;margin:0;color:#1b1d21;background:#f6f7f9}\
main{max-width:760px;margin:0 auto;padding:16px}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}\
section{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:12px 16px;margin:12px 0}\
label{display:block;margin:6px 0}input,select,button{font:inherit;padding:6px 8px;max-width:100%}\
button{cursor:pointer}table{border-collapse:collapse;width:100%;font-size:.9em}\
td,th{text-align:left;padding:4px 6px;border-bottom:1px solid #eee}.scroll{overflow-x:auto}\
.notice{background:#e7f6ec;border-color:#9fd5b0}.error{background:#fdecec;border-color:#f0a8a8}\
.big{font-size:2em;font-weight:600}.neg{color:#b00020}code{word-break:break-all}";

/// A whole page.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>{} · GPU-Bridge</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        escape(title)
    )
}

/// Answers with `html`, never cached, never framed, no scripts.
pub fn respond(status: StatusCode, html: String) -> HttpResponse {
    let mut response = Response::new(Outgoing::whole(Bytes::from(html)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A page that says what went wrong, with the way back.
pub fn problem(status: StatusCode, message: &str) -> HttpResponse {
    let body = format!(
        "<h1>{}</h1><section class=error><p>{}</p></section><p><a href=/account/dashboard>Back to the dashboard</a></p>",
        status.canonical_reason().unwrap_or("Error"),
        escape(message)
    );
    respond(status, page("Error", &body))
}

/// `303 See Other` to `location` (after a form post).
pub fn see_other(location: &str) -> HttpResponse {
    let mut response = respond(StatusCode::SEE_OTHER, String::new());
    if let Ok(value) = HeaderValue::from_str(location) {
        response
            .headers_mut()
            .insert(hyper::header::LOCATION, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_cannot_become_markup() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(dollars(26.25), "$26.25");
        assert_eq!(dollars(-0.003), "-$0.0030");
        assert_eq!(dollars(0.0), "$0.00");
    }
}
