//! The workload: which documents open which conversations, the follow-up questions,
//! the think times, all drawn from one seed so a run can be repeated exactly.

mod documents;

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::config::{DocumentSource, Settings};
use crate::error::ConfigError;

pub use documents::{bundled, load_directory, synthetic, CODE_EXTENSIONS, TEXT_EXTENSIONS};

/// Whether a document is code or prose: it picks the instruction and the questions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DocKind {
    Code,
    #[default]
    Text,
}

impl DocKind {
    pub fn label(self) -> &'static str {
        match self {
            DocKind::Code => "code",
            DocKind::Text => "text",
        }
    }

    fn instruction(self) -> &'static str {
        match self {
            DocKind::Code => "You are reviewing the following source file. Explain what it does, point out bugs, risks and unclear parts, and suggest concrete improvements. Keep your answers specific to this code.",
            DocKind::Text => "Read the following document carefully. Summarise its main points, then answer my questions about it using only what the document says.",
        }
    }

    /// The fixed follow-up questions for this kind.
    pub fn questions(self) -> &'static [&'static str] {
        match self {
            DocKind::Code => &[
                "Which function is the most complex, and how would you simplify it?",
                "Are there any bugs or edge cases that are not handled? List them.",
                "How would you test this code? Name the three most important test cases.",
                "What happens when the input is empty or malformed?",
                "Are there any concurrency or resource-leak problems?",
                "Which names or comments are misleading, and what would you rename?",
                "How does error handling work here, and how would you improve it?",
                "What would you change to make this code faster?",
                "Is there any duplicated logic that could be shared?",
                "Summarise your review in five bullet points for the author.",
            ],
            DocKind::Text => &[
                "What are the three most important facts in this document?",
                "Who is the intended audience, and how can you tell?",
                "Which claims are supported by evidence, and which are not?",
                "Explain the hardest section in simpler words.",
                "What questions does the document leave unanswered?",
                "List every number mentioned and what it refers to.",
                "How would you shorten this document to one paragraph?",
                "What would a critic say about this document?",
                "Which section would you read first if you had two minutes, and why?",
                "Write a title and a one-sentence summary for this document.",
            ],
        }
    }
}

/// One document, held once however many conversations open with it.
#[derive(Debug)]
pub struct Document {
    pub name: String,
    pub kind: DocKind,
    /// The first user message: instruction and the whole document in a fenced block.
    pub opening: Arc<str>,
    pub bytes: usize,
}

impl Document {
    pub fn new(name: impl Into<String>, kind: DocKind, text: &str) -> Document {
        let name = name.into();
        let fence_lang = name
            .rsplit('.')
            .next()
            .filter(|_| kind == DocKind::Code)
            .unwrap_or("");
        let opening = format!(
            "{}\n\n```{fence_lang}\n{}\n```",
            kind.instruction(),
            text.trim_end()
        );
        Document {
            name,
            kind,
            opening: opening.into(),
            bytes: text.len(),
        }
    }
}

/// Everything one conversation will do, decided before the run starts.
#[derive(Debug, Clone)]
pub struct ConversationPlan {
    pub index: u32,
    pub doc: Arc<Document>,
    /// One per turn after the first.
    pub questions: Vec<&'static str>,
    /// Think time in seconds before each turn's request, first turn included.
    pub delays: Vec<f64>,
}

/// The whole measured workload.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    pub documents: Vec<Arc<Document>>,
    pub conversations: Vec<ConversationPlan>,
}

/// Load the documents the settings name.
pub fn load_documents(source: &DocumentSource) -> Result<Vec<Document>, ConfigError> {
    match source {
        DocumentSource::Bundled => Ok(bundled()),
        DocumentSource::Directory { path } => load_directory(path),
        DocumentSource::Synthetic { bytes } => Ok(synthetic(*bytes, 12)),
    }
}

impl Plan {
    /// Draw every random choice from `seed`: the order of the documents, then per
    /// conversation its questions and think times. Each conversation gets its own
    /// generator derived in order, so the plan does not depend on scheduling.
    pub fn new(settings: &Settings, documents: Vec<Document>, seed: u64) -> Plan {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut documents: Vec<Arc<Document>> = documents.into_iter().map(Arc::new).collect();
        documents.shuffle(&mut rng);
        let n = documents.len();
        let conversations = (0..settings.conversations)
            .map(|i| {
                let mut crng = StdRng::seed_from_u64(rng.random());
                let doc = documents[i % n].clone();
                let pool = doc.kind.questions();
                let questions = (1..settings.turns)
                    .map(|_| pool[crng.random_range(0..pool.len())])
                    .collect();
                let delays = (0..settings.turns)
                    .map(|_| {
                        if settings.max_delay > settings.min_delay {
                            crng.random_range(settings.min_delay..=settings.max_delay)
                        } else {
                            settings.min_delay
                        }
                    })
                    .collect();
                ConversationPlan {
                    index: i as u32,
                    doc,
                    questions,
                    delays,
                }
            })
            .collect();
        Plan {
            seed,
            documents,
            conversations,
        }
    }
}

/// A fresh random seed, for runs that did not set one (printed so they can be repeated).
pub fn random_seed() -> u64 {
    rand::rng().random()
}

/// Prompts of the warm-up requests: short, and sharing no prefix with the documents.
pub fn warmup_prompt(i: usize) -> String {
    format!("Warm-up request {i}: reply with one short sentence about the weather.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(conversations: usize, turns: usize) -> Settings {
        Settings {
            conversations,
            turns,
            ..Settings::default()
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_plan_and_another_seed_another() {
        let s = settings(30, 5);
        let a = Plan::new(&s, bundled(), 42);
        let b = Plan::new(&s, bundled(), 42);
        let c = Plan::new(&s, bundled(), 43);
        let key = |p: &Plan| {
            p.conversations
                .iter()
                .map(|c| (c.doc.name.clone(), c.questions.clone(), c.delays.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&c));
    }

    #[test]
    fn conversation_i_opens_with_document_i_mod_n_and_documents_are_shared() {
        let s = settings(30, 3);
        let p = Plan::new(&s, bundled(), 7);
        let n = p.documents.len();
        for c in &p.conversations {
            assert!(Arc::ptr_eq(&c.doc, &p.documents[c.index as usize % n]));
            assert_eq!(c.questions.len(), 2);
            assert_eq!(c.delays.len(), 3);
            assert!(c.delays.iter().all(|d| (0.5..=2.0).contains(d)));
            assert!(c
                .questions
                .iter()
                .all(|q| c.doc.kind.questions().contains(q)));
        }
    }

    #[test]
    fn opening_holds_the_instruction_and_the_whole_document_fenced() {
        let d = Document::new("x.py", DocKind::Code, "print('hi')\n");
        assert!(d.opening.starts_with("You are reviewing"));
        assert!(d.opening.ends_with("```py\nprint('hi')\n```"));
    }
}
