//! Finished responses kept for `GET /v1/responses/{id}` and `previous_response_id`: behind a
//! trait (like `HealthStore`) so a shared backend can come later; in memory by default,
//! bounded in count (`responses.store_max`) and age (`responses.store_seconds`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::Value;

use crate::api::responses::{OutputItem, ResponseObject};
use crate::config::ResponsesSection;

/// A finished response, the input items of its request, and the stored response that
/// request continued (`previous_response_id`), shared rather than copied.
#[derive(Debug)]
pub struct StoredResponse {
    pub response: ResponseObject,
    pub input: Vec<Value>,
    pub previous: Option<Arc<StoredResponse>>,
}

impl StoredResponse {
    /// The whole conversation up to and including this response, as input items: every
    /// earlier request's input and response output, oldest first.
    pub fn conversation(&self) -> Vec<Value> {
        let mut chain = vec![self];
        while let Some(p) = chain.last().and_then(|s| s.previous.as_deref()) {
            chain.push(p);
        }
        let mut items = Vec::new();
        for s in chain.into_iter().rev() {
            items.extend(s.input.iter().cloned());
            items.extend(s.response.output.iter().filter_map(OutputItem::as_input));
        }
        items
    }
}

#[async_trait]
pub trait ResponseStore: Send + Sync {
    async fn put(&self, stored: StoredResponse);
    /// `None` for an unknown or expired id.
    async fn get(&self, id: &str) -> Option<Arc<StoredResponse>>;
}

pub struct MemoryStore {
    max: usize,
    ttl: Duration,
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_id: HashMap<String, (Instant, Arc<StoredResponse>)>,
    /// Insertion order, oldest first, for eviction.
    order: VecDeque<String>,
}

impl MemoryStore {
    pub fn new(config: &ResponsesSection) -> MemoryStore {
        MemoryStore {
            max: config.store_max,
            ttl: Duration::from_secs_f64(config.store_seconds),
            inner: Mutex::new(Entries::default()),
        }
    }
}

#[async_trait]
impl ResponseStore for MemoryStore {
    async fn put(&self, stored: StoredResponse) {
        if self.max == 0 {
            return;
        }
        let now = Instant::now();
        let mut e = self.inner.lock();
        // Expired entries first, then the oldest while over the bound.
        while let Some(oldest) = e.order.front() {
            let expired = e
                .by_id
                .get(oldest)
                .is_none_or(|(at, _)| now.duration_since(*at) >= self.ttl);
            if !expired && e.order.len() < self.max {
                break;
            }
            let id = e.order.pop_front().expect("front exists");
            e.by_id.remove(&id);
        }
        let id = stored.response.id.clone();
        e.order.push_back(id.clone());
        e.by_id.insert(id, (now, Arc::new(stored)));
    }

    async fn get(&self, id: &str) -> Option<Arc<StoredResponse>> {
        let e = self.inner.lock();
        let (at, s) = e.by_id.get(id)?;
        (at.elapsed() < self.ttl).then(|| s.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::responses::{to_chat, Shape};

    fn shape() -> Shape {
        let req = serde_json::from_value(serde_json::json!({"model": "m", "input": "x"})).unwrap();
        to_chat(req, None).unwrap().shape
    }

    fn stored(id: &str) -> StoredResponse {
        StoredResponse {
            response: shape().response(id.into(), 0, "completed"),
            input: Vec::new(),
            previous: None,
        }
    }

    #[tokio::test]
    async fn bounded_oldest_evicted() {
        let s = MemoryStore::new(&ResponsesSection {
            store_max: 2,
            store_seconds: 3600.0,
        });
        for id in ["a", "b", "c"] {
            s.put(stored(id)).await;
        }
        assert!(s.get("a").await.is_none());
        assert!(s.get("b").await.is_some() && s.get("c").await.is_some());
    }

    #[tokio::test]
    async fn expired_is_gone() {
        let s = MemoryStore::new(&ResponsesSection {
            store_max: 10,
            store_seconds: 0.05,
        });
        s.put(stored("a")).await;
        assert!(s.get("a").await.is_some());
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(s.get("a").await.is_none());
    }

    #[test]
    fn a_chain_shares_its_turns_and_replays_them_in_order() {
        let turn = |text: &str, previous: Option<Arc<StoredResponse>>| {
            let mut response = shape().response(format!("resp_{text}"), 0, "completed");
            response.output.push(OutputItem::Message {
                id: "msg_1".into(),
                status: "completed",
                role: "assistant",
                content: vec![crate::api::responses::OutputText::new(format!("re {text}"))],
            });
            Arc::new(StoredResponse {
                response,
                input: vec![serde_json::json!({"role": "user", "content": text})],
                previous,
            })
        };
        let one = turn("one", None);
        let two = turn("two", Some(one.clone()));
        let three = turn("three", Some(two));
        let texts: Vec<String> = three
            .conversation()
            .iter()
            .map(|i| match &i["content"] {
                serde_json::Value::String(s) => s.clone(),
                parts => parts[0]["text"].as_str().unwrap().to_string(),
            })
            .collect();
        assert_eq!(
            texts,
            ["one", "re one", "two", "re two", "three", "re three"]
        );
        assert_eq!(Arc::strong_count(&one), 2, "shared, not copied");
    }

    #[tokio::test]
    async fn zero_keeps_nothing() {
        let s = MemoryStore::new(&ResponsesSection {
            store_max: 0,
            store_seconds: 10.0,
        });
        s.put(stored("a")).await;
        assert!(s.get("a").await.is_none());
    }
}
