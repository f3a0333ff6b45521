//! A raw HTTP harness around [`MockWechat`]: requests go out as bytes, answers come back as
//! status, content type and body text, so the tests assert the wire format itself.

use serde_json::{Value, json};
use wxnotify_sandbox::mock_wechat::{
    MOCK_MP_APPID, MOCK_MP_SECRET, MOCK_OA_APPID, MOCK_OA_SECRET, MockConfig, MockWechat, oa_openid,
};

/// A running fake and a plain HTTP client.
pub struct Fake {
    pub mock: MockWechat,
    http: reqwest::Client,
}

/// One raw answer.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub content_type: Option<String>,
    pub text: String,
}

impl Raw {
    /// The body as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }

    /// HTTP 200, `text/plain`, and a JSON body with no `errcode`.
    #[track_caller]
    pub fn assert_ok(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.text);
        assert_eq!(self.content_type.as_deref(), Some("text/plain"));
        assert!(
            !self.text.contains("errcode"),
            "success with errcode: {}",
            self.text
        );
        self.json()
    }

    /// HTTP 200, `text/plain`, `errcode` = `code`, and an errmsg ending in a rid.
    #[track_caller]
    pub fn assert_err(&self, code: i64) -> String {
        assert_eq!(self.status, 200, "{}", self.text);
        assert_eq!(self.content_type.as_deref(), Some("text/plain"));
        let v = self.json();
        assert_eq!(v["errcode"], code, "{}", self.text);
        let errmsg = v["errmsg"].as_str().expect("errmsg").to_owned();
        let (_, rid) = errmsg
            .rsplit_once(" rid: ")
            .expect("errmsg ends with a rid");
        assert_eq!(rid.split('-').map(str::len).collect::<Vec<_>>(), [8, 8, 8]);
        errmsg
    }
}

impl Fake {
    /// A fake with `cfg`.
    pub async fn start(cfg: MockConfig) -> Fake {
        let mock = MockWechat::start(cfg).await.expect("the fake starts");
        let http = reqwest::Client::builder()
            .no_proxy()
            // A fault may close a connection; never reuse one.
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        Fake { mock, http }
    }

    /// A fake with the default world.
    pub async fn default() -> Fake {
        Fake::start(MockConfig::default()).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.mock.base_url(), path.trim_start_matches('/'))
    }

    /// The raw answer of GET `path?query`, or the transport error.
    pub async fn try_get(&self, path: &str, query: &[(&str, &str)]) -> reqwest::Result<Raw> {
        raw(self.http.get(self.url(path)).query(query).send().await?).await
    }

    /// The raw answer of POST `path?query` with `body`, or the transport error.
    pub async fn try_post(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: &str,
    ) -> reqwest::Result<Raw> {
        let req = self.http.post(self.url(path)).query(query);
        let req = req.header("content-type", "application/json");
        raw(req.body(body.to_owned()).send().await?).await
    }

    /// GET, expecting an answer.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Raw {
        self.try_get(path, query).await.expect("an answer")
    }

    /// POST, expecting an answer.
    pub async fn post(&self, path: &str, query: &[(&str, &str)], body: &str) -> Raw {
        self.try_post(path, query, body).await.expect("an answer")
    }

    /// A fresh classic token of `appid`.
    pub async fn token_of(&self, appid: &str, secret: &str) -> String {
        let query = [
            ("grant_type", "client_credential"),
            ("appid", appid),
            ("secret", secret),
        ];
        let v = self.get("/cgi-bin/token", &query).await.assert_ok();
        v["access_token"].as_str().expect("a token").to_owned()
    }

    /// A fresh classic OA token.
    pub async fn oa_token(&self) -> String {
        self.token_of(MOCK_OA_APPID, MOCK_OA_SECRET).await
    }

    /// A fresh classic MP token.
    pub async fn mp_token(&self) -> String {
        self.token_of(MOCK_MP_APPID, MOCK_MP_SECRET).await
    }

    /// `stable_token` for the OA.
    pub async fn stable(&self, force_refresh: bool) -> Raw {
        let body = json!({"grant_type":"client_credential","appid":MOCK_OA_APPID,
            "secret":MOCK_OA_SECRET,"force_refresh":force_refresh});
        self.post("/cgi-bin/stable_token", &[], &body.to_string())
            .await
    }

    /// `template/send` of `body` with `token`.
    pub async fn send(&self, token: &str, body: &Value) -> Raw {
        self.try_send(token, body).await.expect("an answer")
    }

    /// `template/send`, or the transport error.
    pub async fn try_send(&self, token: &str, body: &Value) -> reqwest::Result<Raw> {
        let query = [("access_token", token)];
        self.try_post("/cgi-bin/message/template/send", &query, &body.to_string())
            .await
    }

    /// A call whose token is `token`: GET `path?access_token=token&extra`.
    pub async fn get_with(&self, token: &str, path: &str, extra: &[(&str, &str)]) -> Raw {
        let mut query = vec![("access_token", token)];
        query.extend_from_slice(extra);
        self.get(path, &query).await
    }
}

async fn raw(resp: reqwest::Response) -> reqwest::Result<Raw> {
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp.text().await?;
    Ok(Raw {
        status,
        content_type,
        text,
    })
}

/// A valid `TPL_ORDER_SHIPPED` send to person `person`.
pub fn shipped(person: u64) -> Value {
    json!({
        "touser": oa_openid(person),
        "template_id": "TPL_ORDER_SHIPPED",
        "url": "https://example.com/orders/1",
        "miniprogram": {"appid": MOCK_MP_APPID, "pagepath": "pages/order/detail?id=1"},
        "data": {"thing1": {"value": "订单已发货"}, "time2": {"value": "2024-01-01 12:00"}}
    })
}

/// `body` with a `client_msg_id`.
pub fn with_id(mut body: Value, id: &str) -> Value {
    body["client_msg_id"] = json!(id);
    body
}

/// The msgid of a send answer, read from the raw text (never through a float).
#[track_caller]
pub fn raw_msgid(text: &str) -> u64 {
    let (_, rest) = text.split_once("\"msgid\":").expect("a msgid");
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().expect("msgid is an unsigned integer")
}
