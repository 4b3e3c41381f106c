//! Rows rendered before their answer exists, written by the transport in their place.
//!
//! Why: a row tool's answer is almost all rows, and `value::render` has already written
//! them as the final bytes of the JSON-RPC line. Handing them to rmcp as JSON values would
//! mean parsing them back and serializing them again, and holding them twice. Instead the
//! tool's result carries two markers (a text block in `content`, a string where
//! `structuredContent.result` goes) and the rendered rows wait here under the markers' key;
//! the front door (`stdio`) serializes the small message as usual, finds the markers and
//! writes the rows in their place, straight from these buffers to stdout.
//!
//! A transport that serializes answers itself (rmcp's HTTP service) has no `Splices`, and
//! the result is built from values instead (`server::shape`); the bytes on the wire are the
//! same either way. A marker holds a per-process random nonce, so no row value (which
//! never passes through the small message anyway) can pose as one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rmcp::model::ContentBlock;
use serde_json::Value;

use crate::value::render::RenderedRows;

/// How long rendered rows wait for their answer to be written. An answer that is never
/// sent (its request was cancelled after the tool finished) must not hold memory forever.
const KEEP: Duration = Duration::from_secs(300);

/// Rendered rows waiting for their answer, by key.
pub struct Splices {
    /// Start of every marker: a control character, the module's name and the nonce.
    prefix: String,
    next: AtomicU64,
    held: Mutex<HashMap<u64, (Instant, RenderedRows)>>,
}

/// The two markers of one answer, to put in the tool's result.
pub struct Markers {
    /// The text of a content block that stands for every row's text block.
    pub block: String,
    /// The string that stands for the `result` array in `structuredContent`.
    pub result: String,
}

/// Where the rows go in one serialized answer.
pub struct Placed {
    pub rows: RenderedRows,
    /// Byte range of the marker's content block in the line.
    pub block: std::ops::Range<usize>,
    /// Byte range of the result marker's string in the line.
    pub result: std::ops::Range<usize>,
}

impl Splices {
    pub fn new() -> Splices {
        let mut nonce = [0u8; 8];
        // If the OS has no randomness the nonce is time-based: still never in a message
        // that carries row values (see the module doc).
        let nonce = match crate::connection::tls::provider()
            .secure_random
            .fill(&mut nonce)
        {
            Ok(()) => u64::from_le_bytes(nonce),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
        };
        Splices {
            prefix: format!("\u{1}dsql-mcp-rows:{nonce:016x}:"),
            next: AtomicU64::new(0),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps `rows` until their answer is written; returns the markers to put in it.
    pub fn hold(&self, rows: RenderedRows) -> Markers {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut held = self.held();
        held.retain(|_, (at, _)| now.duration_since(*at) < KEEP);
        held.insert(key, (now, rows));
        Markers {
            block: format!("{}{key}:block", self.prefix),
            result: format!("{}{key}:result", self.prefix),
        }
    }

    /// The key of the rows an answer's `structuredContent` stands for, if it does.
    fn key_of(&self, structured: &Value) -> Option<u64> {
        let marker = structured.get("result")?.as_str()?;
        let rest = marker.strip_prefix(&self.prefix)?;
        rest.strip_suffix(":result")?.parse().ok()
    }

    /// For a serialized answer whose `structuredContent` is `structured`: its rows and
    /// where they go in `line`, taken out of this store. `None` for any other answer.
    pub fn place(&self, structured: Option<&Value>, line: &[u8]) -> Option<Placed> {
        let key = self.key_of(structured?)?;
        let (_, rows) = self.held().remove(&key)?;
        let block =
            serde_json::to_vec(&ContentBlock::text(format!("{}{key}:block", self.prefix))).ok()?;
        let result = serde_json::to_vec(&format!("{}{key}:result", self.prefix)).ok()?;
        let find = |needle: &[u8]| {
            memchr::memmem::find(line, needle).map(|start| start..start + needle.len())
        };
        Some(Placed {
            rows,
            block: find(&block)?,
            result: find(&result)?,
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Instant, RenderedRows)>> {
        // Each operation is one map call: consistent even if a holder panicked.
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for Splices {
    fn default() -> Self {
        Splices::new()
    }
}

impl Placed {
    /// The pieces of the finished line, in order (the caller writes them one after the
    /// other): `line` with the block marker replaced by the rows' text blocks and the result
    /// marker by the array of row objects.
    pub fn pieces<'a>(&'a self, line: &'a [u8]) -> Vec<&'a [u8]> {
        let blocks = || self.rows.blocks.pieces().collect::<Vec<_>>();
        let result = || {
            let mut result = vec![b"[".as_slice()];
            result.extend(self.rows.objects.pieces());
            result.push(b"]");
            result
        };
        let (first, first_fill, second, second_fill) = if self.block.start < self.result.start {
            (&self.block, blocks(), &self.result, result())
        } else {
            (&self.result, result(), &self.block, blocks())
        };
        let mut pieces = Vec::with_capacity(first_fill.len() + second_fill.len() + 3);
        pieces.push(&line[..first.start]);
        pieces.extend(first_fill);
        pieces.push(&line[first.end..second.start]);
        pieces.extend(second_fill);
        pieces.push(&line[second.end..]);
        pieces
    }
}
