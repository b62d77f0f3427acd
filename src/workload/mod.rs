//! The workload: which documents open which conversations, the follow-up questions,
//! the think times, all drawn from one seed so a run can be repeated exactly.

pub mod arrivals;
mod documents;
mod tools;

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::config::{DocumentSource, SaltSetting, WorkloadSettings};
use crate::error::ConfigError;

pub use documents::{bundled, load_directory, synthetic, CODE_EXTENSIONS, TEXT_EXTENSIONS};
pub use tools::{tool_definitions, tool_output, MAX_TOOLS};

/// Whether a document is code or prose: it picks the instruction and the questions.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
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
    /// The whole document in a fenced block: the end of every opening that uses it.
    pub block: Arc<str>,
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
        let block = format!("```{fence_lang}\n{}\n```", text.trim_end());
        Document {
            name,
            kind,
            block: block.into(),
            bytes: text.len(),
        }
    }

    /// The instruction for the document's kind: the part of an opening that every
    /// conversation on a kind shares, as users share a system prompt.
    pub fn instruction(&self) -> &'static str {
        self.kind.instruction()
    }
}

/// Everything one conversation will do, decided before the run starts.
#[derive(Debug, Clone)]
pub struct ConversationPlan {
    /// Index in the full plan (the same in every shard).
    pub index: u32,
    pub doc: Arc<Document>,
    /// The salt line of this conversation's opening; empty with `--salt none`.
    pub salt_line: String,
    /// One per turn after the first.
    pub questions: Vec<&'static str>,
    /// Think time in seconds before each turn's request, first turn included.
    pub delays: Vec<f64>,
}

impl ConversationPlan {
    /// The opening message as the parts it is sent as: instruction, salt line and the
    /// document. Without a salt, exactly the prompt of the tool this replaces.
    pub fn opening(&self) -> Vec<&str> {
        if self.salt_line.is_empty() {
            vec![self.doc.instruction(), "\n\n", &self.doc.block]
        } else {
            vec![
                self.doc.instruction(),
                "\n\n",
                &self.salt_line,
                "\n\n",
                &self.doc.block,
            ]
        }
    }
}

/// The whole measured workload, every shard's part of it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    /// `None`: sent without a salt line.
    pub salt: Option<String>,
    pub documents: Vec<Arc<Document>>,
    pub conversations: Vec<ConversationPlan>,
}

/// The salt of a run: as set, none, or a new random one.
pub fn resolve_salt(setting: &SaltSetting) -> Option<String> {
    match setting {
        SaltSetting::Off => None,
        SaltSetting::Fixed(s) => Some(s.clone()),
        SaltSetting::Random => Some(format!("{:012x}", rand::rng().random::<u64>() >> 16)),
    }
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
    ///
    /// The plan is always the full one: a shard picks its conversations from it, so
    /// the union of all shards is exactly the unsharded plan.
    pub fn new(
        settings: &WorkloadSettings,
        documents: Vec<Document>,
        seed: u64,
        salt: Option<String>,
    ) -> Plan {
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
                    salt_line: salt
                        .as_deref()
                        .map(|s| format!("Run {s}, conversation {i}."))
                        .unwrap_or_default(),
                    questions,
                    delays,
                }
            })
            .collect();
        Plan {
            seed,
            salt,
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

    fn settings(conversations: usize, turns: usize) -> WorkloadSettings {
        WorkloadSettings {
            conversations,
            turns,
            ..crate::config::Settings::default().workload
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_plan_and_another_seed_another() {
        let s = settings(30, 5);
        let a = Plan::new(&s, bundled(), 42, None);
        let b = Plan::new(&s, bundled(), 42, None);
        let c = Plan::new(&s, bundled(), 43, None);
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
        let p = Plan::new(&s, bundled(), 7, Some("abc".into()));
        let n = p.documents.len();
        for c in &p.conversations {
            assert!(Arc::ptr_eq(&c.doc, &p.documents[c.index as usize % n]));
            assert_eq!(c.salt_line, format!("Run abc, conversation {}.", c.index));
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
        let doc = Arc::new(Document::new("x.py", DocKind::Code, "print('hi')\n"));
        let conv = |salt_line: &str| ConversationPlan {
            index: 3,
            doc: doc.clone(),
            salt_line: salt_line.into(),
            questions: vec![],
            delays: vec![],
        };
        let plain = conv("").opening().concat();
        assert!(plain.starts_with("You are reviewing"));
        assert!(plain.ends_with("code.\n\n```py\nprint('hi')\n```"));
        // The salt sits after the shared instruction and before the document.
        let salted = conv("Run s1, conversation 3.").opening().concat();
        let (instruction, rest) = salted.split_once("\n\n").unwrap();
        assert_eq!(instruction, doc.instruction());
        assert!(rest.starts_with("Run s1, conversation 3.\n\n```py\n"));
    }

    #[test]
    fn no_two_conversations_of_a_run_open_with_the_same_prompt() {
        let p = Plan::new(&settings(40, 2), bundled(), 1, Some("x".into()));
        let mut openings: Vec<String> = p
            .conversations
            .iter()
            .map(|c| c.opening().concat())
            .collect();
        openings.sort();
        openings.dedup();
        assert_eq!(openings.len(), 40);
    }
}
