//! The pages a challenged browser sees, and the JSON an API client gets. Everything is
//! inline (one small script, one small style): the page names no other host, and its
//! `Content-Security-Policy` (set by the caller) forbids loading from one.

use holdfast_common::html_escape as escape;
use std::fmt::Write as _;

/// The endpoint the script's form posts a solution to.
pub const VERIFY_PATH: &str = "/.holdfast/challenge/verify";
/// The endpoint the no-JavaScript form posts to.
pub const NOJS_PATH: &str = "/.holdfast/challenge/nojs";

/// What a challenge page shows.
pub struct PageInput<'a> {
    /// The proof-of-work token (`Signer::pow_token`).
    pub pow_token: &'a str,
    pub difficulty: u8,
    /// The same-host path to go back to (already checked).
    pub to: &'a str,
    /// The no-JavaScript token and wait, when the rule allows that path.
    pub nojs: Option<(&'a str, u64)>,
    /// The request id, shown for support.
    pub request_id: &'a str,
}

/// The JavaScript: SHA-256 through `crypto.subtle` when the page is in a secure context,
/// else the inline implementation below; it searches in batches so the page stays
/// responsive, then posts the nonce with the form.
const SCRIPT: &str = r#"(function(){
var f=document.getElementById('hf-pow'),s=document.getElementById('hf-st'),c=f.elements.c.value,d=+f.getAttribute('data-d'),E=new TextEncoder(),S=window.crypto&&window.crypto.subtle,n=0;
function H(m){var P=[],K=[],h=[],i,j,q;for(q=2;P.length<64;q++){for(j=0;j<P.length&&q%P[j];j++);if(j==P.length){P.push(q);K.push(Math.pow(q,1/3)*4294967296|0);if(h.length<8)h.push(Math.pow(q,1/2)*4294967296|0)}}
var l=m.length,N=((l+9+63)>>6)<<4,W=new Uint32Array(N),w=new Uint32Array(64),o=new Uint8Array(32);
for(i=0;i<l;i++)W[i>>2]|=m[i]<<(24-(i&3)*8);W[l>>2]|=128<<(24-(l&3)*8);W[N-1]=l*8;
for(i=0;i<N;i+=16){var a=h[0],b=h[1],C=h[2],D=h[3],e=h[4],F=h[5],g=h[6],k=h[7];
for(j=0;j<64;j++){if(j<16)w[j]=W[i+j];else{var x=w[j-15],y=w[j-2];w[j]=((x>>>7|x<<25)^(x>>>18|x<<14)^(x>>>3))+((y>>>17|y<<15)^(y>>>19|y<<13)^(y>>>10))+w[j-7]+w[j-16]}
var t=k+((e>>>6|e<<26)^(e>>>11|e<<21)^(e>>>25|e<<7))+((e&F)^(~e&g))+K[j]+w[j]|0,u=((a>>>2|a<<30)^(a>>>13|a<<19)^(a>>>22|a<<10))+((a&b)^(a&C)^(b&C))|0;
k=g;g=F;F=e;e=D+t|0;D=C;C=b;b=a;a=t+u|0}
h[0]=h[0]+a|0;h[1]=h[1]+b|0;h[2]=h[2]+C|0;h[3]=h[3]+D|0;h[4]=h[4]+e|0;h[5]=h[5]+F|0;h[6]=h[6]+g|0;h[7]=h[7]+k|0}
for(i=0;i<32;i++)o[i]=h[i>>2]>>>(24-(i&3)*8)&255;return o}
function z(x){var r=0;for(var i=0;i<x.length;i++){var b=x[i];if(b){while(!(b&128)){r++;b<<=1}return r}r+=8}return r}
function done(v){f.elements.n.value=v;s.textContent='Done; continuing\u2026';f.submit()}
function js(){for(var e=n+4000;n<e;n++)if(z(H(E.encode(c+':'+n)))>=d)return done(n);s.textContent='Working\u2026 '+n;setTimeout(js,0)}
function sub(){var p=[];for(var i=0;i<64;i++)p.push(S.digest('SHA-256',E.encode(c+':'+(n+i))));Promise.all(p).then(function(r){for(var i=0;i<r.length;i++)if(z(new Uint8Array(r[i]))>=d)return done(n+i);n+=64;s.textContent='Working\u2026 '+n;sub()},js)}
s.textContent='Working\u2026';if(S)sub();else js()})();"#;

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:10vh auto;\
padding:0 1em;color:#222;background:#fff}small{color:#666}";

fn head(title: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{title}</title>\
         <style>{STYLE}</style></head><body>\n<h1>{title}</h1>\n"
    )
}

fn foot(out: &mut String, request_id: &str) {
    let _ = write!(
        out,
        "<p><small>Request ID: <code>{}</code> &middot; served by the Holdfast edge</small></p>\n\
         </body></html>\n",
        escape(request_id)
    );
}

fn nojs_form(out: &mut String, token: &str, to: &str, wait: u64) {
    let _ = writeln!(
        out,
        "<form method=\"post\" action=\"{NOJS_PATH}\">\
         <input type=\"hidden\" name=\"t\" value=\"{}\">\
         <input type=\"hidden\" name=\"to\" value=\"{}\">\
         <p>Wait {wait} second{}, then press <input type=\"submit\" value=\"Continue\"></p></form>",
        escape(token),
        escape(to),
        if wait == 1 { "" } else { "s" }
    );
}

/// The challenge: the proof-of-work form driven by the inline script, and in `<noscript>`
/// either the no-JavaScript form or a line saying JavaScript is needed.
pub fn challenge_page(p: &PageInput<'_>) -> String {
    let mut out = head("Checking your browser");
    out.push_str(
        "<p id=\"hf-st\">This site asks your browser for a few seconds of work before it \
         continues. Nothing is installed and nothing leaves this site.</p>\n",
    );
    let _ = write!(
        out,
        "<form id=\"hf-pow\" method=\"post\" action=\"{VERIFY_PATH}\" data-d=\"{}\">\
         <input type=\"hidden\" name=\"c\" value=\"{}\"><input type=\"hidden\" name=\"n\" value=\"\">\
         <input type=\"hidden\" name=\"to\" value=\"{}\"></form>\n<noscript>",
        p.difficulty,
        escape(p.pow_token),
        escape(p.to)
    );
    match p.nojs {
        Some((token, wait)) => {
            out.push_str("<p>JavaScript is off: you can continue without it.</p>");
            nojs_form(&mut out, token, p.to, wait);
        }
        None => out.push_str(
            "<p>This page needs JavaScript to continue. Please enable it and reload.</p>",
        ),
    }
    let _ = write!(out, "</noscript>\n<script>{SCRIPT}</script>\n");
    foot(&mut out, p.request_id);
    out
}

/// The no-JavaScript form came back before its wait was over: the same form again.
pub fn wait_page(token: &str, to: &str, wait_left: u64, request_id: &str) -> String {
    let mut out = head("Please wait a moment");
    out.push_str("<p>That was a little too quick.</p>\n");
    nojs_form(&mut out, token, to, wait_left.max(1));
    foot(&mut out, request_id);
    out
}

/// The client passed but came back without the cookie: say so instead of challenging again.
pub fn loop_page(to: &str, request_id: &str) -> String {
    let mut out = head("Cookies seem to be blocked");
    let _ = write!(
        out,
        "<p>Your browser passed the check, but it did not send back the cookie that records \
         this, so the site would ask again and again.</p>\n<p>Please allow cookies for this \
         site (or leave private mode, or check extensions that block them), then \
         <a href=\"{}\">try again</a>.</p>\n",
        escape(to)
    );
    foot(&mut out, request_id);
    out
}

/// What an API client is told for each `reason` (the `detail` of `json_body`).
pub fn json_detail(reason: &str) -> &'static str {
    match reason {
        "no_cookie" => {
            "this resource asks a browser to pass a challenge first; API clients cannot, so \
             the request was refused"
        }
        "bad_solution" => {
            "the proof of work sent does not have the leading zero bits the challenge asked \
             for; load the page and solve it again"
        }
        "too_early" => {
            "the no-JavaScript form came back before its wait was over; send it again after \
             Retry-After seconds"
        }
        "forged" => {
            "the pass cookie or challenge token was not made by this site, or was changed; \
             load the page for a new challenge"
        }
        "expired" => {
            "the pass cookie or challenge token is too old; load the page for a new challenge"
        }
        "wrong_ip" => {
            "the pass cookie or challenge token was made for another client address; load \
             the page for a new challenge"
        }
        "wrong_ua" => {
            "the pass cookie was made for another User-Agent; load the page for a new challenge"
        }
        "cookie_not_returned" => {
            "the challenge was passed, but the pass cookie did not come back; allow cookies \
             for this site"
        }
        "challenge_unavailable" => {
            "the check that protects this resource could not run just now; try again in a \
             little while"
        }
        _ => "the challenge that protects this resource was not passed",
    }
}

/// The answer for an API client: no page, a reason it can act on. `request_id` is a real id
/// or `REQUEST_ID_MARK`, which is kept as it is (the edge replaces it with the request id,
/// `[A-Za-z0-9._:-]`, before sending); anything else is escaped.
pub fn json_body(reason: &str, request_id: &str) -> String {
    let esc = |s: &str| {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        out
    };
    let id = if request_id == holdfast_modules::REQUEST_ID_MARK {
        request_id.to_string()
    } else {
        esc(request_id)
    };
    format!(
        "{{\"status\":403,\"error\":\"challenge required\",\"reason\":\"{}\",\
         \"detail\":\"{}\",\"request_id\":\"{id}\"}}",
        esc(reason),
        esc(json_detail(reason)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(nojs: bool) -> String {
        challenge_page(&PageInput {
            pow_token: "p1.1.8.x.y",
            difficulty: 8,
            to: "/protected/\"><script>",
            nojs: nojs.then_some(("n1.1.x.y", 3)),
            request_id: "rid",
        })
    }

    #[test]
    fn page_is_self_contained_and_escapes() {
        let p = page(true);
        assert!(!p.contains("http://") && !p.contains("https://") && !p.contains("//cdn"));
        assert!(!p.contains(" src="), "no external script or image");
        assert!(p.contains("<noscript>") && p.contains(NOJS_PATH));
        assert!(p.contains("/protected/&quot;&gt;&lt;script&gt;"));
        assert!(p.len() < 8192, "{} bytes", p.len());
        let without = page(false);
        assert!(!without.contains(NOJS_PATH) && without.contains("needs JavaScript"));
    }

    #[test]
    fn json_is_json() {
        let j = json_body("no \"cookie\"", "r\n1");
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["reason"], "no \"cookie\"");
        assert_eq!(v["request_id"], "r\n1");
    }

    #[test]
    fn the_json_keeps_the_request_id_mark_for_the_edge_to_fill_in() {
        let mark = holdfast_modules::REQUEST_ID_MARK;
        let j = json_body("no_cookie", mark);
        assert!(j.contains(mark), "{j:?}");
        let v: serde_json::Value = serde_json::from_str(&j.replace(mark, "abc-1")).unwrap();
        assert_eq!(v["request_id"], "abc-1");
    }

    #[test]
    fn each_reason_has_its_own_detail() {
        let reasons = [
            "no_cookie",
            "bad_solution",
            "too_early",
            "forged",
            "expired",
            "wrong_ip",
            "wrong_ua",
            "cookie_not_returned",
            "challenge_unavailable",
        ];
        let details: std::collections::HashSet<&str> =
            reasons.iter().map(|r| json_detail(r)).collect();
        assert_eq!(details.len(), reasons.len(), "a detail said twice");
        let bad: serde_json::Value = serde_json::from_str(&json_body("bad_solution", "r")).unwrap();
        assert!(
            bad["detail"].as_str().unwrap().contains("proof of work"),
            "{bad}"
        );
    }

    /// The page's script, run by Node with a stand-in document: it finds a nonce the edge
    /// accepts, with the inline SHA-256 and with WebCrypto. Fails, saying so, where Node is
    /// missing (`.ci/run` installs it).
    #[test]
    fn script_solves_in_node() {
        let node = ["node", "nodejs"].into_iter().find(|n| {
            std::process::Command::new(n)
                .arg("--version")
                .output()
                .is_ok()
        });
        let Some(node) = node else {
            panic!("node is not on PATH: this test needs Debian's nodejs package (.ci/run installs it)");
        };
        let token = "p1.1700000000000.10.abc.def";
        for subtle in [false, true] {
            let harness = format!(
                "var sub={subtle};var out=null;var els={{c:{{value:{token:?}}},n:{{value:''}}}};\
                 var f={{elements:els,getAttribute:function(){{return '10'}},submit:function(){{out=els.n.value}}}};\
                 var st={{textContent:''}};\
                 globalThis.document={{getElementById:function(i){{return i=='hf-pow'?f:st}}}};\
                 globalThis.window={{crypto:sub?require('crypto').webcrypto:undefined}};\
                 {SCRIPT}\n\
                 (function w(k){{if(out!==null){{console.log(out)}}else if(k>20000){{process.exit(3)}}else{{setTimeout(function(){{w(k+1)}},1)}}}})(0);"
            );
            let out = std::process::Command::new(node)
                .arg("-e")
                .arg(&harness)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "node ({:?}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            let nonce = String::from_utf8(out.stdout).unwrap().trim().to_string();
            assert!(
                crate::pow::solves(token, &nonce, 10),
                "subtle={subtle}: nonce {nonce:?} does not solve"
            );
        }
    }
}
