//! The dead-letter filter form: the text fields a person types, turned into a
//! [`DeadLetterQuery`] (with a message for what does not parse), and back into links and hidden
//! fields so a confirmation acts on exactly the filter that was shown.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use maud::{Markup, html};

use wxnotify_services::dlq::DeadLetterQuery;

/// The filter as typed (every field a string, empty = not set).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FilterForm {
    pub app: String,
    pub reason: String,
    pub errcode: String,
    pub template: String,
    pub campaign: String,
    pub since: String,
    pub until: String,
    pub text: String,
    pub include_replayed: bool,
    pub max_id: String,
}

/// The field names, in form order.
const FIELDS: [&str; 10] = [
    "app",
    "reason",
    "errcode",
    "template",
    "campaign",
    "since",
    "until",
    "text",
    "include_replayed",
    "max_id",
];

impl FilterForm {
    /// The form from decoded `key=value` pairs (unknown keys are ignored).
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Self {
        let mut f = FilterForm::default();
        for (k, v) in pairs {
            let v = v.as_ref().trim().to_owned();
            match k.as_ref() {
                "app" => f.app = v,
                "reason" => f.reason = v,
                "errcode" => f.errcode = v,
                "template" => f.template = v,
                "campaign" => f.campaign = v,
                "since" => f.since = v,
                "until" => f.until = v,
                "text" => f.text = v,
                "include_replayed" => f.include_replayed = !v.is_empty() && v != "false",
                "max_id" => f.max_id = v,
                _ => {}
            }
        }
        f
    }

    fn get(&self, name: &str) -> String {
        match name {
            "app" => self.app.clone(),
            "reason" => self.reason.clone(),
            "errcode" => self.errcode.clone(),
            "template" => self.template.clone(),
            "campaign" => self.campaign.clone(),
            "since" => self.since.clone(),
            "until" => self.until.clone(),
            "text" => self.text.clone(),
            "include_replayed" if self.include_replayed => "on".into(),
            "max_id" => self.max_id.clone(),
            _ => String::new(),
        }
    }

    /// The query, or what to fix.
    pub fn to_query(&self) -> Result<DeadLetterQuery, String> {
        let opt = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
        let errcode = opt(&self.errcode)
            .map(|e| {
                e.parse::<i64>()
                    .map_err(|_| format!("errcode {e:?} is not a number (e.g. 43101)"))
            })
            .transpose()?;
        let max_id = opt(&self.max_id)
            .map(|e| {
                e.parse::<i64>()
                    .map_err(|_| "max_id is not a number".to_owned())
            })
            .transpose()?;
        Ok(DeadLetterQuery {
            app: opt(&self.app),
            reason: opt(&self.reason),
            errcode,
            template: opt(&self.template),
            campaign: opt(&self.campaign),
            since: opt(&self.since).map(|s| instant("since", &s)).transpose()?,
            until: opt(&self.until).map(|s| instant("until", &s)).transpose()?,
            text: opt(&self.text),
            include_replayed: self.include_replayed,
            max_id,
        })
    }

    /// `key=value&…` of the set fields (for links).
    pub fn to_url_query(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for name in FIELDS {
            let v = self.get(name);
            if !v.is_empty() {
                s.append_pair(name, &v);
            }
        }
        s.finish()
    }

    /// Hidden inputs carrying the filter through a POST.
    pub fn hidden_fields(&self) -> Markup {
        html! {
            @for name in FIELDS {
                @let v = self.get(name);
                @if !v.is_empty() { input type="hidden" name=(name) value=(v); }
            }
        }
    }

    /// Whether any field is set.
    pub fn is_empty(&self) -> bool {
        *self == FilterForm::default()
    }
}

/// An instant as typed: RFC 3339, `YYYY-MM-DDTHH:MM[:SS]` or `YYYY-MM-DD HH:MM` (UTC), or a
/// date (midnight UTC).
fn instant(name: &str, s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err(format!(
        "{name} {s:?} is not a time: use e.g. 2026-11-30T08:00 (UTC) or 2026-11-30"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_round_trips_through_links_and_becomes_a_query() {
        let f = FilterForm::from_pairs(&[
            ("errcode", "43101"),
            ("since", "2026-11-30T08:00"),
            ("text", "a b&c"),
            ("ignored", "x"),
        ]);
        let back: Vec<(String, String)> = url::form_urlencoded::parse(f.to_url_query().as_bytes())
            .into_owned()
            .collect();
        assert_eq!(FilterForm::from_pairs(&back), f);
        let q = f.to_query().unwrap();
        assert_eq!(q.errcode, Some(43101));
        assert_eq!(q.since.unwrap().to_rfc3339(), "2026-11-30T08:00:00+00:00");
        assert_eq!(q.text.as_deref(), Some("a b&c"));
        assert!(!q.include_replayed);
    }

    #[test]
    fn what_does_not_parse_says_how_to_fix_it() {
        let f = FilterForm {
            errcode: "x".into(),
            ..Default::default()
        };
        assert!(f.to_query().unwrap_err().contains("not a number"));
        let f = FilterForm {
            until: "yesterday".into(),
            ..Default::default()
        };
        assert!(f.to_query().unwrap_err().contains("2026-11-30"));
    }
}
