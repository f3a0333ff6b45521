//! The `id` of a message that is not a job (too large, or invalid), found without building it.
//!
//! A dead letter for such a message is labelled with its `id` when it has one. Parsing the body
//! into a `serde_json::Value` to find it would cost about ten times the body (a 60 MB message
//! took a worker past 500 MB); [`id_hint`] instead reads the top-level object with serde's
//! `IgnoredAny` for every other field, so it allocates nothing proportional to the body except
//! serde_json's scratch buffer for one escaped string, and keeps at most
//! [`MAX_ID_HINT_CHARS`] characters of the id. Nesting is bounded by serde_json's recursion
//! limit, so no input can exhaust the stack either.

use std::fmt;

use serde::Deserializer;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};

/// The longest id hint kept.
pub const MAX_ID_HINT_CHARS: usize = 200;

/// The top-level string `id` of a JSON object, cut to [`MAX_ID_HINT_CHARS`] characters; `None`
/// when the body is not a JSON object or has no string `id`.
pub fn id_hint(body: &[u8]) -> Option<String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    de.deserialize_map(TopLevel).ok().flatten()
}

struct TopLevel;

impl<'de> Visitor<'de> for TopLevel {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut id = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Id if id.is_none() => id = map.next_value::<IdValue>()?.0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(id)
    }
}

/// A key, kept only as "is it `id`".
enum Key {
    Id,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(if v == "id" { Key::Id } else { Key::Other })
            }
        }
        d.deserialize_str(V)
    }
}

/// A string value cut to [`MAX_ID_HINT_CHARS`]; any other value is no id.
struct IdValue(Option<String>);

impl<'de> de::Deserialize<'de> for IdValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IdValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IdValue, E> {
                Ok(IdValue(Some(v.chars().take(MAX_ID_HINT_CHARS).collect())))
            }
            fn visit_bool<E>(self, _: bool) -> Result<IdValue, E> {
                Ok(IdValue(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<IdValue, E> {
                Ok(IdValue(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<IdValue, E> {
                Ok(IdValue(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<IdValue, E> {
                Ok(IdValue(None))
            }
            fn visit_unit<E>(self) -> Result<IdValue, E> {
                Ok(IdValue(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<IdValue, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(IdValue(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IdValue, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(IdValue(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// Counts this thread's live bytes and their peak (other threads' tests do not disturb it).
    struct Counting;

    thread_local! {
        static LIVE: Cell<usize> = const { Cell::new(0) };
        static PEAK: Cell<usize> = const { Cell::new(0) };
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = LIVE.try_with(|l| {
                l.set(l.get() + layout.size());
                let _ = PEAK.try_with(|p| p.set(p.get().max(l.get())));
            });
            // SAFETY: forwarded unchanged to the system allocator.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(layout.size())));
            // SAFETY: forwarded unchanged to the system allocator.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    /// The peak of bytes allocated by `f` above what was live before it.
    fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let base = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(base));
        let out = f();
        (out, PEAK.with(Cell::get) - base)
    }

    fn huge_message(id: &str, items: usize) -> Vec<u8> {
        let mut body = br#"{"data":["#.to_vec();
        for i in 0..items {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(br#"{"k":"v","n":[1,2,3]}"#);
        }
        body.extend_from_slice(format!(r#"],"id":"{id}","to":{{"unionid":"u"}}}}"#).as_bytes());
        body
    }

    #[test]
    fn the_id_of_an_oversized_message_is_found_without_memory_proportional_to_it() {
        let body = huge_message("order-42", 100_000);
        assert!(body.len() > 2_000_000);
        let (hint, peak) = peak_of(|| id_hint(&body));
        assert_eq!(hint.as_deref(), Some("order-42"));
        assert!(
            peak < 64 * 1024,
            "id_hint allocated {peak} bytes for {} bytes",
            body.len()
        );
        // What the old way (a serde_json::Value) costs, to show the measure sees it.
        let (value, value_peak) = peak_of(|| serde_json::from_slice::<serde_json::Value>(&body));
        drop(value);
        eprintln!(
            "body {} bytes: id_hint peak {peak} bytes, serde_json::Value peak {value_peak} bytes",
            body.len()
        );
        assert!(value_peak > 4 * body.len(), "Value took {value_peak}");
    }

    #[test]
    fn ids_are_cut_and_non_objects_have_none() {
        let long = "x".repeat(10_000);
        let body = format!(r#"{{"id":"{long}"}}"#);
        assert_eq!(id_hint(body.as_bytes()).unwrap().len(), MAX_ID_HINT_CHARS);
        assert_eq!(id_hint(br#"{"id":"a\"b"}"#).as_deref(), Some("a\"b"));
        for none in [
            &br#"{"id":7}"#[..],
            b"[1,2]",
            b"\"id\"",
            b"{",
            b"",
            b"{\"id\":\"x\"",
            b"\xff",
        ] {
            assert_eq!(id_hint(none), None, "{:?}", String::from_utf8_lossy(none));
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(id_hint(deep.as_bytes()), None);
    }
}
