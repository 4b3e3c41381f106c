//! Offline search over the bundled guides: BM25 over their sections.
//!
//! Why not a crate: the corpus is a handful of guides (tens of kilobytes, a few hundred
//! sections), fixed at compile time. The maintained full-text engines (tantivy and the
//! like) bring an on-disk or memory-mapped index, a schema, a query language and a large
//! dependency tree to solve a problem this size does not have; the small BM25 crates are
//! thin and little maintained. BM25 itself is a dozen lines, so it lives here, with tests,
//! and the index is built in memory on first use (well under a millisecond).
//!
//! Choices: text is lower-cased and split on anything but letters, digits and `_` (so
//! `wait_for_job` stays one term and `sys.jobs` gives `sys` and `jobs`); a short list of
//! English stop words is dropped; plurals are folded by a light suffix rule (`indexes` →
//! `index`, `policies` → `policy`). A section's headings count twice, so a section *about*
//! a term outranks one that mentions it. k1 = 1.2 and b = 0.75, the usual values.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::guides::{self, Section};

const K1: f64 = 1.2;
const B: f64 = 0.75;
/// How many times a heading's terms count, against once for body terms.
const HEADING_WEIGHT: u32 = 2;

const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how",
    "i", "if", "in", "into", "is", "it", "its", "me", "my", "of", "on", "or", "should", "so",
    "that", "the", "their", "then", "there", "these", "this", "those", "to", "use", "was", "we",
    "what", "when", "where", "which", "who", "why", "will", "with", "you", "your",
];

/// One ranked section.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub section: Section,
    pub score: f64,
    /// A line or two around the first line that contains a query term.
    pub snippet: String,
}

struct Doc {
    section: Section,
    terms: HashMap<String, u32>,
    len: u32,
}

/// A BM25 index over sections.
pub struct Index {
    docs: Vec<Doc>,
    /// In how many sections each term occurs.
    df: HashMap<String, u32>,
    avg_len: f64,
}

impl Index {
    pub fn new(sections: Vec<Section>) -> Index {
        let mut df: HashMap<String, u32> = HashMap::new();
        let docs: Vec<Doc> = sections
            .into_iter()
            .map(|section| {
                let mut terms: HashMap<String, u32> = HashMap::new();
                let mut len = 0;
                for heading in &section.headings {
                    for t in tokens(heading) {
                        *terms.entry(t).or_default() += HEADING_WEIGHT;
                        len += HEADING_WEIGHT;
                    }
                }
                for t in tokens(body(&section)) {
                    *terms.entry(t).or_default() += 1;
                    len += 1;
                }
                for t in terms.keys() {
                    *df.entry(t.clone()).or_default() += 1;
                }
                Doc {
                    section,
                    terms,
                    len,
                }
            })
            .collect();
        let avg_len = if docs.is_empty() {
            1.0
        } else {
            docs.iter().map(|d| f64::from(d.len)).sum::<f64>() / docs.len() as f64
        };
        Index {
            docs,
            df,
            avg_len: avg_len.max(1.0),
        }
    }

    /// The index over every bundled guide, built once.
    pub fn bundled() -> &'static Index {
        static INDEX: OnceLock<Index> = OnceLock::new();
        INDEX.get_or_init(|| Index::new(guides::all().flat_map(|g| g.sections()).collect()))
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// The `limit` best sections for `query`, best first; ties keep guide order. Sections
    /// that share no term with the query are never returned.
    pub fn search(&self, query: &str, limit: usize) -> Vec<Hit> {
        let mut query_terms = tokens(query);
        query_terms.sort();
        query_terms.dedup();
        let n = self.docs.len() as f64;
        let mut scored: Vec<(usize, f64)> = self
            .docs
            .iter()
            .enumerate()
            .filter_map(|(i, doc)| {
                let norm = K1 * (1.0 - B + B * f64::from(doc.len) / self.avg_len);
                let score: f64 = query_terms
                    .iter()
                    .filter_map(|t| {
                        let tf = f64::from(*doc.terms.get(t)?);
                        let df = f64::from(self.df[t]);
                        let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                        Some(idf * tf * (K1 + 1.0) / (tf + norm))
                    })
                    .sum();
                (score > 0.0).then_some((i, score))
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored
            .into_iter()
            .take(limit)
            .map(|(i, score)| {
                let section = self.docs[i].section.clone();
                let snippet = snippet(&section, &query_terms);
                Hit {
                    section,
                    score,
                    snippet,
                }
            })
            .collect()
    }
}

/// The section without its heading line.
fn body(section: &Section) -> &str {
    if section.headings.is_empty() {
        section.text
    } else {
        section.text.split_once('\n').map_or("", |(_, rest)| rest)
    }
}

/// Search terms of `text`: lower-cased words, stop words dropped, plurals folded.
pub fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .map(|w| fold_plural(&w))
        .collect()
}

/// A light plural fold, applied alike to the guides and the query.
fn fold_plural(word: &str) -> String {
    if word.chars().count() <= 3 || !word.is_ascii() {
        return word.to_owned();
    }
    if let Some(stem) = word.strip_suffix("ies") {
        return format!("{stem}y");
    }
    if let Some(stem) = word.strip_suffix("sses") {
        return format!("{stem}ss");
    }
    for suffix in ["xes", "ches", "shes"] {
        if word.ends_with(suffix) {
            return word[..word.len() - 2].to_owned();
        }
    }
    if word.ends_with('s')
        && !(word.ends_with("ss") || word.ends_with("us") || word.ends_with("is"))
    {
        return word[..word.len() - 1].to_owned();
    }
    word.to_owned()
}

/// The first body line (code included) holding a query term, with the line after it when
/// short; the first prose line when none does.
fn snippet(section: &Section, query_terms: &[String]) -> String {
    let lines: Vec<&str> = body(section)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("```") && !l.starts_with("~~~"))
        .collect();
    let at = lines
        .iter()
        .position(|l| tokens(l).iter().any(|t| query_terms.contains(t)))
        .unwrap_or(0);
    let mut text = lines.get(at).copied().unwrap_or("").to_owned();
    if let Some(next) = lines.get(at + 1)
        && text.chars().count() < 120
    {
        text.push(' ');
        text.push_str(next);
    }
    guides::truncate_chars(&text, 300)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(guide: &'static str, headings: &[&str], text: &'static str) -> Section {
        Section {
            guide,
            headings: headings.iter().map(|h| (*h).to_owned()).collect(),
            start_index: 0,
            text,
        }
    }

    fn corpus() -> Index {
        Index::new(vec![
            section(
                "g",
                &["Indexes"],
                "## Indexes\nBuild every index with CREATE INDEX ASYNC and poll sys.jobs.\n",
            ),
            section(
                "g",
                &["Transactions"],
                "## Transactions\nAt most 3,000 rows per transaction. Retry on 40001.\n",
            ),
            section(
                "g",
                &["Primary keys"],
                "## Primary keys\nUse UUID keys; an index on the key is created for you.\n",
            ),
            section(
                "h",
                &["Misc"],
                "## Misc\nNothing relevant here at all, only words words words.\n",
            ),
        ])
    }

    #[test]
    fn tokens_fold_case_plurals_and_stop_words() {
        assert_eq!(
            tokens("How do I create the Indexes?"),
            vec!["create", "index"]
        );
        assert_eq!(
            tokens("policies keys status class classes"),
            vec!["policy", "key", "status", "class", "class"]
        );
        assert_eq!(
            tokens("CALL sys.wait_for_job(42)"),
            vec!["call", "sys", "wait_for_job", "42"]
        );
        assert_eq!(tokens("Übergrößen"), vec!["übergrößen"]);
        assert!(tokens("what is the").is_empty());
    }

    #[test]
    fn the_section_about_a_term_ranks_first() {
        let idx = corpus();
        let hits = idx.search("async indexes", 10);
        assert_eq!(hits[0].section.heading(), "Indexes");
        // "index" also occurs in Primary keys, less strongly.
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[1].section.heading(), "Primary keys");
        assert!(hits[0].score > hits[1].score);
    }

    #[test]
    fn heading_terms_outweigh_body_mentions() {
        let idx = Index::new(vec![
            section(
                "g",
                &["Other"],
                "## Other\nretry retry mentioned in passing\n",
            ),
            section("g", &["Retry"], "## Retry\nloop on the error\n"),
        ]);
        assert_eq!(idx.search("retry", 5)[0].section.heading(), "Retry");
    }

    #[test]
    fn rare_terms_weigh_more_than_common_ones() {
        let idx = Index::new(vec![
            section("g", &[], "alpha filler\n"),
            section("g", &[], "zeta filler\n"),
            section("g", &[], "alpha other\n"),
            section("g", &[], "alpha more\n"),
        ]);
        let hits = idx.search("alpha zeta", 10);
        assert_eq!(hits.len(), 4);
        assert_eq!(hits[0].section.text, "zeta filler\n");
    }

    #[test]
    fn limit_and_no_match() {
        let idx = corpus();
        assert_eq!(idx.search("index", 1).len(), 1);
        assert!(idx.search("kubernetes", 10).is_empty());
        assert!(idx.search("", 10).is_empty());
        assert!(idx.search("the of and", 10).is_empty());
    }

    #[test]
    fn ties_keep_corpus_order() {
        let idx = Index::new(vec![
            section("a", &["One"], "## One\nshared\n"),
            section("b", &["Two"], "## Two\nshared\n"),
        ]);
        let hits = idx.search("shared", 5);
        assert_eq!((hits[0].section.guide, hits[1].section.guide), ("a", "b"));
    }

    #[test]
    fn snippets_show_the_matching_line() {
        let idx = Index::new(vec![section(
            "g",
            &["Jobs"],
            "## Jobs\nFirst line about nothing in particular that is long enough to stand alone on its own merits.\n\nPoll sys.jobs until the job is done.\n",
        )]);
        assert_eq!(
            idx.search("poll", 1)[0].snippet,
            "Poll sys.jobs until the job is done."
        );
    }

    #[test]
    fn the_bundled_guides_answer_dsql_questions() {
        let idx = Index::bundled();
        assert!(!idx.is_empty());
        let top = &idx.search("create index async", 3)[0];
        let text = top.section.text.to_lowercase();
        assert!(text.contains("async"), "{:?}", top.section.headings);
        let top = &idx.search("optimistic concurrency retry 40001", 3)[0];
        assert!(
            top.section.text.contains("40001"),
            "{:?}",
            top.section.headings
        );
    }
}
