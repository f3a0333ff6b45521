//! Reading an audience: a recipients file (NDJSON or CSV), or an explicit list. Each entry is a
//! recipient (`mp_openid`, `unionid` or `oa_openid`) with optional per-recipient template data
//! (e.g. an order number). A bad line is reported with its line number and skipped, never
//! silently dropped and never fatal. Entries stream: a file of a million lines is never held in
//! memory.

use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use wxnotify_core::domain::{OpenId, Recipient, TemplateData, UnionId};

/// Bad lines kept with their message in a report (all are counted).
pub const MAX_BAD_LINES_KEPT: usize = 100;

/// One recipient of an audience.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// 1-based line (for a CSV file: the line of the record; for a list: the position).
    pub line: u64,
    /// The recipient.
    pub to: Recipient,
    /// Template fields of this recipient only, merged over the campaign's shared data.
    pub data: Option<Map<String, Value>>,
}

/// A line that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadLine {
    /// 1-based line number.
    pub line: u64,
    /// What is wrong with it.
    pub error: String,
}

/// Bad lines of one audience: how many, and the first [`MAX_BAD_LINES_KEPT`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadLines {
    /// Every skipped line.
    pub count: u64,
    /// The first ones, with their reason.
    pub first: Vec<BadLine>,
}

impl BadLines {
    /// Notes one bad line.
    pub fn push(&mut self, bad: BadLine) {
        self.count += 1;
        if self.first.len() < MAX_BAD_LINES_KEPT {
            self.first.push(bad);
        }
    }
}

/// An entry of an explicit list (the HTTP API, the library).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(expecting = "a recipient {\"to\": {…}, \"data\": {…}}")]
pub struct ListEntry {
    /// `{"mp_openid": …}`, `{"unionid": …}` or `{"oa_openid": …}`.
    pub to: Recipient,
    /// Optional per-recipient template fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Map<String, Value>>,
}

/// The format of a recipients file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON object a line: `{"mp_openid": "o…", "data": {"order": "42"}}`.
    Ndjson,
    /// A header naming one of `mp_openid`, `unionid`, `oa_openid`; every other column is a
    /// template field of that recipient.
    Csv,
}

impl FileFormat {
    /// The format implied by a file name (`.csv`, else NDJSON).
    pub fn of_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => FileFormat::Csv,
            _ => FileFormat::Ndjson,
        }
    }
}

/// Each item is an entry or a bad line.
pub type Item = Result<Entry, BadLine>;

/// Reads a recipients file as a stream of items.
pub fn read_file(path: &Path) -> std::io::Result<Box<dyn Iterator<Item = Item> + Send>> {
    let file = std::fs::File::open(path)?;
    let reader = std::io::BufReader::with_capacity(1 << 16, file);
    Ok(match FileFormat::of_path(path) {
        FileFormat::Ndjson => Box::new(ndjson(reader)),
        FileFormat::Csv => Box::new(csv_items(reader)),
    })
}

/// Items of an NDJSON stream. Blank lines are skipped without a report.
pub fn ndjson<R: BufRead + Send>(reader: R) -> impl Iterator<Item = Item> + Send {
    reader.split(b'\n').enumerate().filter_map(|(i, line)| {
        let line_no = i as u64 + 1;
        let bad = |error: String| {
            Some(Err(BadLine {
                line: line_no,
                error,
            }))
        };
        let bytes = match line {
            Ok(b) => b,
            Err(e) => return bad(format!("cannot read: {e}")),
        };
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => t.trim(),
            Err(_) => return bad("not UTF-8".into()),
        };
        if text.is_empty() {
            return None;
        }
        let value: Map<String, Value> = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return bad(format!("not a JSON object: {e}")),
        };
        Some(entry_of_object(line_no, value))
    })
}

/// Builds an entry from a JSON object with one address key and an optional `data` object.
fn entry_of_object(line: u64, mut obj: Map<String, Value>) -> Item {
    let bad = |error: String| Err(BadLine { line, error });
    let data = match obj.remove("data") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return bad("`data` must be an object of template fields".into()),
    };
    let mut found = Vec::new();
    for key in ["mp_openid", "unionid", "oa_openid"] {
        if let Some(v) = obj.remove(key) {
            match v {
                Value::String(s) => found.push((key, s)),
                _ => return bad(format!("`{key}` must be a string")),
            }
        }
    }
    if let Some(other) = obj.keys().next() {
        return bad(format!(
            "unknown field `{other}` (expected mp_openid, unionid or oa_openid, and data)"
        ));
    }
    if found.len() != 1 {
        return bad("exactly one of mp_openid, unionid or oa_openid is required".into());
    }
    let (key, value) = found.pop().expect("one address");
    finish(line, key, value, data)
}

/// Checks the address and the data of one entry.
fn finish(line: u64, key: &str, value: String, data: Option<Map<String, Value>>) -> Item {
    let bad = |error: String| Err(BadLine { line, error });
    let to = match key {
        "mp_openid" => OpenId::parse(value).map(Recipient::MpOpenid),
        "unionid" => UnionId::parse(value).map(Recipient::Unionid),
        _ => OpenId::parse(value).map(Recipient::OaOpenid),
    };
    let to = match to {
        Ok(to) => to,
        Err(e) => return bad(format!("{key}: {e}")),
    };
    if let Some(data) = &data
        && let Err(e) = serde_json::from_value::<TemplateData>(Value::Object(data.clone()))
    {
        return bad(format!("data: {e}"));
    }
    Ok(Entry { line, to, data })
}

/// Items of a CSV stream with a header row.
pub fn csv_items<R: std::io::Read + Send + 'static>(
    reader: R,
) -> impl Iterator<Item = Item> + Send {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let header: Result<Vec<String>, BadLine> = match rdr.headers() {
        Ok(h) => Ok(h.iter().map(str::to_owned).collect()),
        Err(e) => Err(BadLine {
            line: 1,
            error: format!("cannot read the header: {e}"),
        }),
    };
    let address = header.as_ref().ok().and_then(|h| {
        let cols: Vec<usize> = h
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c.as_str(), "mp_openid" | "unionid" | "oa_openid"))
            .map(|(i, _)| i)
            .collect();
        (cols.len() == 1).then(|| cols[0])
    });
    let setup_error = match (&header, address) {
        (Err(e), _) => Some(e.clone()),
        (Ok(_), None) => Some(BadLine {
            line: 1,
            error: "the header must name exactly one of mp_openid, unionid or oa_openid".into(),
        }),
        _ => None,
    };
    let header = header.unwrap_or_default();
    let records = rdr.into_records();
    let rest: Box<dyn Iterator<Item = Item> + Send> = match (setup_error.clone(), address) {
        (None, Some(col)) => Box::new(records.map(move |rec| {
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    return Err(BadLine {
                        line,
                        error: format!("bad CSV record: {e}"),
                    });
                }
            };
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            let mut data = Map::new();
            for (i, field) in rec.iter().enumerate() {
                if i != col && !field.is_empty() {
                    data.insert(header[i].clone(), Value::String(field.to_owned()));
                }
            }
            let data = (!data.is_empty()).then_some(data);
            finish(line, &header[col], rec[col].to_owned(), data)
        })),
        _ => Box::new(std::iter::empty()),
    };
    setup_error.map(Err).into_iter().chain(rest)
}

/// Items of an explicit list (positions are 1-based).
pub fn list_items(entries: Vec<ListEntry>) -> impl Iterator<Item = Item> + Send {
    entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| list_item(i as u64 + 1, Ok(e)))
}

/// The item of one entry of a list at 1-based `position`, or of an entry that could not be
/// read (`Err` with why): for lists read an entry at a time.
pub fn list_item(position: u64, entry: Result<ListEntry, String>) -> Item {
    match entry {
        Ok(e) => finish(position, e.to.kind(), e.to.value().to_owned(), e.data),
        Err(error) => Err(BadLine {
            line: position,
            error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_bad_lines_are_reported_with_their_numbers() {
        let text = "{\"mp_openid\":\"oMP1\",\"data\":{\"order\":\"42\"}}\n\
                    not json\n\
                    \n\
                    {\"unionid\":\"u1\",\"oa_openid\":\"o2\"}\n\
                    {\"oa_openid\":\"oOA3\"}\n\
                    {\"oa_openid\":\"oOA4\",\"data\":{\"bad key!\":\"x\"}}\n";
        let items: Vec<Item> = ndjson(text.as_bytes()).collect();
        assert_eq!(items.len(), 5);
        let ok: Vec<&Entry> = items.iter().filter_map(|i| i.as_ref().ok()).collect();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].line, 1);
        assert_eq!(ok[0].data.as_ref().unwrap()["order"], "42");
        assert_eq!(ok[1].line, 5);
        let bad: Vec<u64> = items
            .iter()
            .filter_map(|i| i.as_ref().err())
            .map(|b| b.line)
            .collect();
        assert_eq!(bad, [2, 4, 6]);
    }

    #[test]
    fn csv_columns_other_than_the_address_are_template_fields() {
        let text = "mp_openid,order\noMP1,42\noMP2\n\"oMP3\",43\n";
        let items: Vec<Item> = csv_items(text.as_bytes()).collect();
        assert_eq!(items.len(), 3);
        let first = items[0].as_ref().unwrap();
        assert_eq!(first.line, 2);
        assert_eq!(first.data.as_ref().unwrap()["order"], "42");
        assert_eq!(items[1].as_ref().unwrap_err().line, 3);
        assert_eq!(items[2].as_ref().unwrap().line, 4);
        let no_address: Vec<Item> = csv_items("name,order\nx,1\n".as_bytes()).collect();
        assert_eq!(no_address.len(), 1);
        assert_eq!(no_address[0].as_ref().unwrap_err().line, 1);
    }
}
