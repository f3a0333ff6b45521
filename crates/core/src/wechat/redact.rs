//! Keeps secrets out of logs: WeChat puts the access token (and, for logins and classic tokens,
//! the AppSecret and the login code) in URLs' query strings, and reqwest errors print URLs.

use url::Url;

/// Query parameters whose values are secret.
const SECRET_PARAMS: &[&str] = &["access_token", "secret", "appsecret", "js_code", "code"];

/// The URL with every secret query value replaced by `REDACTED`.
pub fn redact_url(url: &Url) -> String {
    if url.query().is_none() {
        return url.to_string();
    }
    let mut out = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if SECRET_PARAMS.contains(&k.as_ref()) {
                "REDACTED".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    out.query_pairs_mut().clear().extend_pairs(pairs);
    out.to_string()
}

/// A reqwest error as text without its URL, followed by the redacted URL.
pub fn redact_error(err: reqwest::Error) -> String {
    let url = err.url().map(redact_url);
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    match url {
        Some(url) => format!("{text} ({url})"),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_query_strings_are_redacted() {
        let url = Url::parse(
            "https://api.weixin.qq.com/sns/jscode2session?appid=wx1&secret=S3CRET&js_code=C0DE&grant_type=authorization_code",
        )
        .unwrap();
        let shown = redact_url(&url);
        assert!(
            !shown.contains("S3CRET") && !shown.contains("C0DE"),
            "{shown}"
        );
        assert!(shown.contains("appid=wx1"), "{shown}");
        let url =
            Url::parse("http://x/cgi-bin/user/get?access_token=T0KEN&next_openid=o1").unwrap();
        assert_eq!(
            redact_url(&url),
            "http://x/cgi-bin/user/get?access_token=REDACTED&next_openid=o1"
        );
    }
}
