//! Property tests of the upstream stream parsers in `providers::sse`: SSE events
//! (`sse_events`) and NDJSON lines (`ndjson_lines`, `split_lines`) read from a real
//! `reqwest::Response` whose body arrives in arbitrary pieces; the OpenAI hot path's own
//! splitter (`sse_data`) agrees with `sse_events` on every input. Arbitrary bytes never panic and
//! always end; generated events and lines come back exactly, however the bytes were split.

use std::time::Duration;

use aisbf::providers::sse::{ndjson_lines, split_lines, sse_data, sse_events};
use aisbf::providers::ProviderError;
use bytes::Bytes;
use futures::StreamExt;
use proptest::prelude::*;

const IDLE: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `bytes` cut at the given points (each taken modulo the length), in order.
fn pieces(bytes: &[u8], cuts: &[usize]) -> Vec<Bytes> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|c| if bytes.is_empty() { 0 } else { c % bytes.len() })
        .collect();
    at.push(0);
    at.push(bytes.len());
    at.sort();
    at.dedup();
    at.windows(2)
        .map(|w| Bytes::copy_from_slice(&bytes[w[0]..w[1]]))
        .collect()
}

/// An upstream response body that arrives as `pieces`, one read each.
fn response(
    pieces: Vec<Bytes>,
) -> impl futures::Stream<Item = Result<Bytes, aisbf::providers::client::TransportError>> + Send {
    futures::stream::iter(pieces.into_iter().map(Ok))
}

/// One SSE event as a provider sends it.
#[derive(Debug, Clone)]
struct Ev {
    event: Option<String>,
    data: Vec<String>,
    id: Option<String>,
}

fn ev() -> impl Strategy<Value = Ev> {
    (
        proptest::option::of("[a-z_.]{1,16}"),
        // Text as models produce it: any characters but line breaks (a break starts a line).
        prop::collection::vec("[^\r\n]{1,24}", 1..4),
        proptest::option::of("[a-zA-Z0-9_-]{1,10}"),
    )
        .prop_map(|(event, data, id)| Ev { event, data, id })
}

fn encode(events: &[Ev], crlf: bool, comments: bool) -> Vec<u8> {
    let nl = if crlf { "\r\n" } else { "\n" };
    let mut out = String::new();
    for e in events {
        if comments {
            out.push_str(&format!(": keep-alive{nl}"));
        }
        if let Some(t) = &e.event {
            out.push_str(&format!("event: {t}{nl}"));
        }
        if let Some(id) = &e.id {
            out.push_str(&format!("id: {id}{nl}"));
        }
        for d in &e.data {
            out.push_str(&format!("data: {d}{nl}"));
        }
        out.push_str(nl);
    }
    out.into_bytes()
}

/// The reference: lines split on `\n`, trailing `\r`/`\n`/spaces trimmed, empty ones skipped.
fn reference_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(|b| *b == b'\n')
        .map(|l| {
            let mut end = l.len();
            while end > 0 && matches!(l[end - 1], b'\r' | b' ') {
                end -= 1;
            }
            l[..end].to_vec()
        })
        .filter(|l| !l.is_empty())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn sse_on_arbitrary_bytes_ends_without_panicking(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let n = runtime().block_on(async {
            sse_events(response(pieces(&bytes, &cuts)), IDLE).count().await
        });
        // Every item consumes input: the stream cannot yield more events than bytes.
        prop_assert!(n <= bytes.len() + 1);
    }

    #[test]
    fn sse_events_round_trip_however_split(
        events in prop::collection::vec(ev(), 0..8),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
        crlf in any::<bool>(),
        comments in any::<bool>(),
    ) {
        let bytes = encode(&events, crlf, comments);
        let got: Vec<_> = runtime().block_on(async {
            sse_events(response(pieces(&bytes, &cuts)), IDLE).collect().await
        });
        prop_assert_eq!(got.len(), events.len(), "{:?}", String::from_utf8_lossy(&bytes));
        for (g, e) in got.into_iter().zip(&events) {
            let g = g.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&g.event, e.event.as_deref().unwrap_or("message"));
            prop_assert_eq!(g.data, e.data.join("\n"));
            if let Some(id) = &e.id {
                prop_assert_eq!(&g.id, id);
            }
        }
    }

    #[test]
    fn sse_data_round_trips_however_split(
        events in prop::collection::vec(ev(), 0..8),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
        crlf in any::<bool>(),
        comments in any::<bool>(),
    ) {
        let bytes = encode(&events, crlf, comments);
        let got: Vec<_> = runtime().block_on(async {
            sse_data(response(pieces(&bytes, &cuts)), IDLE).collect().await
        });
        prop_assert_eq!(got.len(), events.len(), "{:?}", String::from_utf8_lossy(&bytes));
        for (g, e) in got.into_iter().zip(&events) {
            let g = g.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(String::from_utf8_lossy(&g), e.data.join("\n"));
        }
    }

    #[test]
    fn sse_data_matches_sse_events_on_arbitrary_bytes(
        bytes in prop::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '), Just(b'd'), Just(b'a'), Just(b't'), any::<u8>()],
            0..512,
        ),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        complete in any::<bool>(),
    ) {
        // The reference drops an event left without its blank line at the end; ours yields
        // it, so the comparison is on input that ends one.
        let mut bytes = bytes;
        if complete {
            bytes.extend_from_slice(b"\n\n");
        }
        let (ours, reference) = runtime().block_on(async {
            let ours: Vec<_> = sse_data(response(pieces(&bytes, &cuts)), IDLE).collect().await;
            let reference: Vec<_> = sse_events(response(pieces(&bytes, &cuts)), IDLE).collect().await;
            (ours, reference)
        });
        prop_assert!(ours.len() <= bytes.len() + 1);
        if complete && reference.iter().all(|r| r.is_ok()) {
            let ours: Vec<Vec<u8>> = ours.into_iter().map(|r| r.unwrap().to_vec()).collect();
            let reference: Vec<Vec<u8>> = reference
                .into_iter()
                .map(|r| r.unwrap().data.into_bytes())
                .filter(|d| !d.is_empty())
                .collect();
            prop_assert_eq!(ours, reference, "{:?}", String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn ndjson_on_arbitrary_bytes_matches_the_reference(
        bytes in prop::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\r'), Just(b' '), Just(b'{'), any::<u8>()], 0..1024),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let got: Vec<Vec<u8>> = runtime().block_on(async {
            ndjson_lines(response(pieces(&bytes, &cuts)), IDLE)
                .map(|l| l.unwrap().to_vec())
                .collect()
                .await
        });
        prop_assert_eq!(got, reference_lines(&bytes));
    }

    #[test]
    fn ndjson_documents_round_trip_however_split(
        docs in prop::collection::vec(
            prop::collection::btree_map("[a-z]{1,6}", "[^\r\n]{0,16}", 0..4), 0..10),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
        crlf in any::<bool>(),
        final_newline in any::<bool>(),
    ) {
        let nl = if crlf { "\r\n" } else { "\n" };
        let lines: Vec<String> = docs.iter().map(|d| serde_json::to_string(d).unwrap()).collect();
        let mut text = lines.join(nl);
        if final_newline && !text.is_empty() {
            text.push_str(nl);
        }
        let got: Vec<String> = runtime().block_on(async {
            ndjson_lines(response(pieces(text.as_bytes(), &cuts)), IDLE)
                .map(|l| String::from_utf8(l.unwrap().to_vec()).unwrap())
                .collect()
                .await
        });
        prop_assert_eq!(got, lines);
    }

    /// An error from the byte stream is passed on once, after the lines completed before it.
    #[test]
    fn a_transport_error_ends_the_lines(
        before in prop::collection::vec("[a-z]{1,8}", 0..5),
    ) {
        let mut input: Vec<Result<Bytes, ProviderError>> = before
            .iter()
            .map(|l| Ok(Bytes::from(format!("{l}\n"))))
            .collect();
        input.push(Err(ProviderError::Protocol("cut".into())));
        let got: Vec<_> = runtime().block_on(split_lines(futures::stream::iter(input)).collect());
        prop_assert_eq!(got.len(), before.len() + 1);
        prop_assert!(matches!(got.last(), Some(Err(ProviderError::Protocol(_)))));
    }
}
