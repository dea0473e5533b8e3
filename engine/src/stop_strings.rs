//! Stop strings matched by ponder as the model writes, for the in-process mistral.rs backend.
//!
//! mistral.rs 0.8.1 matches a request's stop strings against a sequence's raw bytes, then cuts
//! the reply at the byte offset it found, in the *lossily decoded* text
//! (`pipeline/sampling.rs`: `String::from_utf8_lossy(..)[..completion_bytes_pos]`). A character
//! the model left unfinished before the stop (a byte-level token that is part of one, then
//! something else) becomes U+FFFD, three bytes where the raw text had one or two: the cut lands
//! inside a character, the engine thread panics, and every request after it fails. It also turns
//! a stop string that is one token into a stop *id*, which misses the same word written with a
//! leading space (another token), so generation runs on past it.
//!
//! So the backend does not hand mistral.rs its stop strings: a logits processor reads what each
//! sequence has written, through the token bytes mistral.rs itself appends, and once a stop
//! string is there it leaves the end-of-sequence token as the only choice. The sequence ends at
//! the token after the stop string (where mistral.rs's matching of a stop string ended it too;
//! a stop it took for one token id ended one token earlier), and the backend cuts the reply at
//! the stop string as before.

use std::path::Path;
use std::sync::Arc;

/// How toktrie marks a special token's bytes (`TokTrie::SPECIAL_TOKEN_MARKER`).
const SPECIAL_TOKEN_MARKER: u8 = 0xff;

/// What each token id adds to a completion's text, as bytes, as mistral.rs appends them from its
/// token trie: a byte-level token that is part of a character adds only its bytes. A special
/// token adds its text only where mistral.rs writes special tokens into a completion (a model
/// whose chat template marks reasoning: `<think>`/`</think>`, Harmony, channel tags; or tools),
/// else nothing: a stop string is looked for in both readings (`</think>` in the one, `"\n\n"`
/// around a special token in the other).
#[derive(Debug, Clone, Default)]
pub(crate) struct TokenBytes {
    data: Vec<u8>,
    /// Where each token's bytes end in `data` (a token's start is the previous one's end).
    ends: Vec<usize>,
    /// Which tokens are special.
    special: Vec<bool>,
    /// The byte tokens the engine took for special (see [`TokenBytes::from_trie_tokens`]), in
    /// id order: each is its byte here, and not special.
    hidden_bytes: Vec<u32>,
}

impl TokenBytes {
    /// The table of a vocabulary: each token's bytes (a special token's text), and whether it
    /// is special, in id order.
    pub(crate) fn new<B: AsRef<[u8]>>(tokens: impl IntoIterator<Item = (B, bool)>) -> Self {
        let mut table = Self::default();
        for (token, special) in tokens {
            table.data.extend_from_slice(token.as_ref());
            table.ends.push(table.data.len());
            table.special.push(special);
        }
        table
    }

    /// The table of a token trie's tokens (toktrie's bytes, in id order): a special token's
    /// marker (a leading 0xff) taken off its text.
    ///
    /// mistral.rs 0.8.1 makes every token of a GGUF vocabulary whose type is not "normal" a
    /// special token (`gguf_tokenizer.rs`), SentencePiece's byte tokens `<0x00>`..`<0xFF>`
    /// too, so its trie holds them as special and a completion's text leaves them out: every
    /// newline of Llama-2's and Mistral's vocabularies (`<0x0A>`), and each character written
    /// in bytes. Here a special token named `<0xHH>` is the byte it names, not special, and
    /// listed as hidden, for the backend to put back in the text ([`TokenBytes::restore_bytes`]).
    pub(crate) fn from_trie_tokens<B: AsRef<[u8]>>(tokens: impl IntoIterator<Item = B>) -> Self {
        let mut hidden_bytes = Vec::new();
        let mut table = Self::new(tokens.into_iter().enumerate().map(|(id, token)| {
            let token = token.as_ref();
            match token.split_first() {
                Some((&SPECIAL_TOKEN_MARKER, text)) => match byte_token(text) {
                    Some(byte) => {
                        hidden_bytes.push(u32::try_from(id).unwrap_or(u32::MAX));
                        (vec![byte], false)
                    }
                    None => (text.to_vec(), true),
                },
                _ => (token.to_vec(), false),
            }
        }));
        table.hidden_bytes = hidden_bytes;
        table
    }

    /// The table of a `tokenizer.json`, built the way mistral.rs builds its token trie from it
    /// (toktrie's byte tokenizer, then each added token marked special made special).
    pub(crate) fn from_tokenizer_json(path: &Path) -> Result<Self, String> {
        let tokenizer = tokenizers::Tokenizer::from_file(path).map_err(|e| e.to_string())?;
        let special: Vec<(u32, String)> = tokenizer
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| token.special)
            .map(|(id, token)| (id, token.content))
            .collect();
        let mut tokens = toktrie_hf_tokenizers::ByteTokenizer::from_tokenizer(tokenizer)
            .map_err(|e| e.to_string())?
            .token_bytes();
        for (id, content) in special {
            if let Some(token) = tokens.get_mut(id as usize) {
                if token.first() != Some(&SPECIAL_TOKEN_MARKER) {
                    *token = [&[SPECIAL_TOKEN_MARKER], content.as_bytes()].concat();
                }
            }
        }
        Ok(Self::from_trie_tokens(tokens))
    }

    /// The bytes `id` adds where special tokens are written (none for an id out of the
    /// vocabulary).
    pub(crate) fn get(&self, id: u32) -> &[u8] {
        let id = id as usize;
        match self.ends.get(id) {
            Some(&end) => {
                let start = if id == 0 { 0 } else { self.ends[id - 1] };
                &self.data[start..end]
            }
            None => &[],
        }
    }

    /// The bytes `id` adds where special tokens are left out.
    pub(crate) fn visible(&self, id: u32) -> &[u8] {
        match self.special.get(id as usize) {
            Some(true) => &[],
            _ => self.get(id),
        }
    }

    /// Whether the engine leaves some of the vocabulary's byte tokens out of a completion's text
    /// (see [`TokenBytes::from_trie_tokens`]).
    pub(crate) fn hides_bytes(&self) -> bool {
        !self.hidden_bytes.is_empty()
    }

    fn hidden(&self, id: u32) -> bool {
        self.hidden_bytes.binary_search(&id).is_ok()
    }

    /// The text of a completion with the byte tokens the engine left out of it put back: `text`
    /// as the engine wrote it (its leading whitespace trimmed) for the generated ids `seen` and
    /// one token after them, whose text alone is `last` where it added nothing to `text` and
    /// may be a byte token (a completion cut at its length; not the end of sequence: a
    /// character whose last byte that token was reads as U+FFFD, its bytes not known). The text
    /// keeps its leading whitespace. `None` where `text` is not what the engine writes for
    /// `seen` (with special tokens written or left out), or nothing was left out.
    pub(crate) fn restore_bytes(
        &self,
        text: &str,
        seen: &[u32],
        last: Option<&str>,
    ) -> Option<String> {
        // The text of `seen` with special tokens written or left out, as the engine wrote it
        // (a hidden byte token is special there: left out, or written as its name) or with
        // the hidden bytes put back.
        let text_of = |specials: bool, engine: bool| -> Vec<u8> {
            let mut text = Vec::new();
            for &id in seen {
                match (self.hidden(id), engine, specials) {
                    (true, true, false) => {}
                    (true, true, true) => {
                        let byte = self.get(id).first().copied().unwrap_or_default();
                        text.extend_from_slice(format!("<0x{byte:02X}>").as_bytes());
                    }
                    (_, _, true) => text.extend_from_slice(self.get(id)),
                    (_, _, false) => text.extend_from_slice(self.visible(id)),
                }
            }
            text
        };
        // The reading `text` starts with; of two, the one that reads more of it (the shorter
        // is a prefix of the text too where the specials written come last).
        let (specials, shown) = [false, true]
            .into_iter()
            .filter_map(|specials| {
                let bytes = text_of(specials, true);
                let written = String::from_utf8_lossy(&bytes);
                let written = written.trim_start();
                text.starts_with(written)
                    .then_some((specials, written.len()))
            })
            .max_by_key(|&(_, shown)| shown)?;
        let tail = text.get(shown..).unwrap_or_default();
        let last = last.filter(|_| tail.is_empty()).unwrap_or_default();
        // The last token, where the engine wrote special tokens, may be a byte token's name.
        let tail_byte = byte_token(tail.as_bytes()).filter(|_| specials);
        if !seen.iter().any(|&id| self.hidden(id)) && last.is_empty() && tail_byte.is_none() {
            return None;
        }
        let mut bytes = text_of(specials, false);
        match tail_byte {
            Some(byte) => bytes.push(byte),
            None => bytes.extend_from_slice(tail.as_bytes()),
        }
        bytes.extend_from_slice(last.as_bytes());
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// The byte a SentencePiece byte token's name (`<0x0A>`) stands for.
fn byte_token(name: &[u8]) -> Option<u8> {
    let hex = name.strip_prefix(b"<0x")?.strip_suffix(b">")?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// A request's stop strings, matched against what a sequence has generated.
#[derive(Debug, Clone)]
pub(crate) struct StopStrings {
    stops: Vec<String>,
    longest: usize,
    tokens: Arc<TokenBytes>,
}

impl StopStrings {
    /// `stops` read through `tokens`; `None` when there is no stop string to look for (empty
    /// ones are none).
    pub(crate) fn new(stops: &[String], tokens: Arc<TokenBytes>) -> Option<Self> {
        let stops: Vec<String> = stops.iter().filter(|s| !s.is_empty()).cloned().collect();
        let longest = stops.iter().map(String::len).max()?;
        Some(Self {
            stops,
            longest,
            tokens,
        })
    }

    /// Whether [`StopStrings::found`] finds one.
    #[cfg(test)]
    fn reached(&self, generated: &[u32]) -> bool {
        self.found(generated).is_some()
    }

    /// The stop string the text of `generated` (a sequence's ids after its prompt) holds, with
    /// special tokens written or left out, if any. Only its end is read: a stop string written
    /// before its last token would have ended it already.
    pub(crate) fn found(&self, generated: &[u32]) -> Option<&str> {
        let tokens = &self.tokens;
        let (from, written) = self.tail(generated, |id| tokens.get(id));
        if let Some(stop) = self.find_in(&written) {
            return Some(stop);
        }
        // Without a special token there, the text without them is the same.
        if !generated[from..]
            .iter()
            .any(|&id| tokens.visible(id) != tokens.get(id))
        {
            return None;
        }
        let (_, visible) = self.tail(generated, |id| tokens.visible(id));
        self.find_in(&visible)
    }

    /// The first of the stop strings `text` holds.
    fn find_in(&self, text: &[u8]) -> Option<&str> {
        self.stops
            .iter()
            .find(|stop| text.windows(stop.len()).any(|w| w == stop.as_bytes()))
            .map(String::as_str)
    }

    /// The end of `generated`'s text, read through `bytes`: where it starts in `generated`, and
    /// enough of it to hold a stop string that ends in its last token.
    fn tail<'t>(&self, generated: &[u32], bytes: impl Fn(u32) -> &'t [u8]) -> (usize, Vec<u8>) {
        let Some(&last) = generated.last() else {
            return (0, Vec::new());
        };
        let wanted = self.longest + bytes(last).len();
        let mut from = generated.len();
        let mut held = 0;
        while from > 0 && held < wanted {
            from -= 1;
            held += bytes(generated[from]).len();
        }
        let text = generated[from..]
            .iter()
            .flat_map(|&id| bytes(id).iter().copied())
            .collect();
        (from, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: id 0 "\n", 1 "\n\n", 2 "Step", 3 " one", 4 the first byte of "é" alone,
    /// 5 a special token "<|x|>", 6 "Wait", 7 " Wait", 8 a special "</think>".
    fn toy() -> Arc<TokenBytes> {
        let tokens: [(&[u8], bool); 9] = [
            (b"\n", false),
            (b"\n\n", false),
            (b"Step", false),
            (b" one", false),
            (&[0xc3], false),
            (b"<|x|>", true),
            (b"Wait", false),
            (b" Wait", false),
            (b"</think>", true),
        ];
        Arc::new(TokenBytes::new(tokens))
    }

    fn stops(stops: &[&str]) -> StopStrings {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        StopStrings::new(&stops, toy()).unwrap()
    }

    #[test]
    fn a_special_tokens_marker_is_taken_off_its_text() {
        let table = TokenBytes::from_trie_tokens([&b"a"[..], b"\xff</think>", b"", b"\xff"]);
        assert_eq!((table.get(0), table.visible(0)), (&b"a"[..], &b"a"[..]));
        assert_eq!(
            (table.get(1), table.visible(1)),
            (&b"</think>"[..], &b""[..])
        );
        assert_eq!(table.get(2), b"");
        assert_eq!(table.get(3), b"");
        assert!(table.special[3] && !table.special[2]);
    }

    /// mistral.rs's trie of a GGUF SentencePiece vocabulary: 0 " x", 1 the byte token
    /// `<0x0A>` (a newline) taken for special, 2 "Final", 3 a special "</s>", 4 ":", 5 the byte
    /// `<0xF0>` (the first of an emoji's four).
    fn gguf_trie() -> TokenBytes {
        TokenBytes::from_trie_tokens([
            &b" x"[..],
            b"\xff<0x0A>",
            b"Final",
            b"\xff</s>",
            b":",
            b"\xff<0xF0>",
        ])
    }

    #[test]
    fn byte_tokens_the_engine_took_for_special_are_their_bytes_and_put_back() {
        let table = gguf_trie();
        assert!(table.hides_bytes());
        assert_eq!((table.get(1), table.visible(1)), (&b"\n"[..], &b"\n"[..]));
        assert!(table.special[3] && !table.special[1] && table.hidden(5));
        // The engine's text leaves the newlines out, and its leading space: put back.
        let seen = [0, 1, 2, 4, 1, 1, 0];
        assert_eq!(
            table.restore_bytes("xFinal: x", &seen, None).as_deref(),
            Some(" x\nFinal:\n\n x")
        );
        // The last token, unseen, adds what the text has after the seen ones'; or, a byte
        // token (its text alone given), itself.
        assert_eq!(
            table
                .restore_bytes("xFinal: x", &seen[..6], None)
                .as_deref(),
            Some(" x\nFinal:\n\n x")
        );
        assert_eq!(
            table
                .restore_bytes("xFinal", &[0, 1, 2], Some("\n"))
                .as_deref(),
            Some(" x\nFinal\n")
        );
        // Special tokens left out, or written (a reasoning model's template), the hidden
        // byte tokens then written as their names: either reading.
        assert_eq!(
            table
                .restore_bytes("xFinal", &[0, 3, 1, 2], None)
                .as_deref(),
            Some(" x\nFinal")
        );
        assert_eq!(
            table
                .restore_bytes("x</s><0x0A>Final", &[0, 3, 1, 2], None)
                .as_deref(),
            Some(" x</s>\nFinal")
        );
        assert_eq!(table.restore_bytes("x</s>Final", &[0, 3, 1, 2], None), None);
        assert_eq!(
            table.restore_bytes("x</s><0x0A>", &[0, 3], None).as_deref(),
            Some(" x</s>\n")
        );
        // Nothing left out, or a text that is not the ids': the engine's text stands.
        assert_eq!(table.restore_bytes("xFinal", &[0, 2], None), None);
        assert_eq!(table.restore_bytes("y", &[0, 1], None), None);
        // A character cut short reads as the replacement character, as a lossy decode has it.
        assert_eq!(
            table.restore_bytes("x", &[0, 5], None).as_deref(),
            Some(" x\u{FFFD}")
        );
        // A vocabulary without byte tokens hides none.
        assert!(
            !TokenBytes::from_trie_tokens([&b"a"[..], b"\xff<0x0G>", b"\xff<0x0AB>"]).hides_bytes()
        );
    }

    /// A byte-level BPE `tokenizer.json` (GPT-2's byte alphabet: "Ġ" a space, "Ċ" a newline,
    /// "Ã" the byte 0xc3) with an added special token and an added plain one.
    const BYTE_LEVEL: &str = r#"{
      "version": "1.0", "truncation": null, "padding": null,
      "added_tokens": [
        {"id": 5, "content": "<|im_end|>", "single_word": false, "lstrip": false,
         "rstrip": false, "normalized": false, "special": true},
        {"id": 6, "content": "</think>", "single_word": false, "lstrip": false,
         "rstrip": false, "normalized": false, "special": false},
        {"id": 7, "content": "plain", "single_word": false, "lstrip": false,
         "rstrip": false, "normalized": true, "special": false}
      ],
      "normalizer": null,
      "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                        "use_regex": true},
      "post_processor": null,
      "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                  "use_regex": true},
      "model": {"type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": null, "end_of_word_suffix": null,
                "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": {"a": 0, "Ġa": 1, "Ċ": 2, "Ã": 3, "ĠĊĊ": 4}, "merges": []}
    }"#;

    /// A SentencePiece-style one: "▁" a space, byte tokens `<0x..>`.
    const SENTENCEPIECE: &str = r#"{
      "version": "1.0", "truncation": null, "padding": null,
      "added_tokens": [
        {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false,
         "rstrip": false, "normalized": false, "special": true}
      ],
      "normalizer": null, "pre_tokenizer": null, "post_processor": null,
      "decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
      "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
                "continuing_subword_prefix": null, "end_of_word_suffix": null,
                "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                "vocab": {"<unk>": 0, "<0x0A>": 1, "<0xC3>": 2, "▁the": 3, "the": 4},
                "merges": []}
    }"#;

    fn from_json(json: &str) -> TokenBytes {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, json).unwrap();
        TokenBytes::from_tokenizer_json(&path).unwrap()
    }

    #[test]
    fn a_byte_level_tokenizer_json_gives_each_tokens_bytes() {
        let table = from_json(BYTE_LEVEL);
        assert_eq!(table.get(0), b"a");
        assert_eq!(table.get(1), b" a");
        assert_eq!(table.get(2), b"\n");
        assert_eq!(table.get(3), &[0xc3]);
        assert_eq!(table.get(4), b" \n\n");
        assert_eq!(
            (table.get(5), table.visible(5)),
            (&b"<|im_end|>"[..], &b""[..])
        );
        // toktrie takes every added token written `<...>` for special, as mistral.rs does.
        assert_eq!(
            (table.get(6), table.visible(6)),
            (&b"</think>"[..], &b""[..])
        );
        assert_eq!(
            (table.get(7), table.visible(7)),
            (&b"plain"[..], &b"plain"[..])
        );
        assert_eq!(table.get(8), b"");
    }

    #[test]
    fn a_sentencepiece_tokenizer_json_gives_each_tokens_bytes() {
        let table = from_json(SENTENCEPIECE);
        assert_eq!(table.get(0), b"<unk>");
        assert_eq!(table.get(1), b"\n");
        assert_eq!(table.get(2), &[0xc3]);
        assert_eq!(table.get(3), b" the");
        assert_eq!(table.get(4), b"the");
    }

    #[test]
    fn a_tokenizer_json_that_is_not_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        assert!(TokenBytes::from_tokenizer_json(&path).is_err());
        std::fs::write(&path, "{}").unwrap();
        assert!(TokenBytes::from_tokenizer_json(&path).is_err());
    }

    #[test]
    fn token_bytes_are_read_by_id() {
        let table = toy();
        assert_eq!(table.get(0), b"\n");
        assert_eq!(table.get(3), b" one");
        assert_eq!(table.get(4), &[0xc3]);
        assert_eq!((table.get(5), table.visible(5)), (&b"<|x|>"[..], &b""[..]));
        assert_eq!(table.get(7), b" Wait");
        assert_eq!(table.visible(7), b" Wait");
        assert_eq!((table.get(9), table.visible(9)), (&b""[..], &b""[..]));
        assert_eq!(table.get(u32::MAX), b"");
    }

    #[test]
    fn a_stop_string_is_found_in_one_token_or_across_several() {
        let blank = stops(&["\n\n"]);
        assert!(!blank.reached(&[]));
        assert!(!blank.reached(&[2, 3]));
        assert!(!blank.reached(&[2, 3, 0]));
        assert!(blank.reached(&[2, 3, 1]));
        assert!(blank.reached(&[2, 3, 0, 0]));
        // A special token between the two newlines: where mistral.rs leaves it out of the text.
        assert!(blank.reached(&[2, 0, 5, 0]));
        let special = stops(&["\n<|x|>"]);
        assert!(special.reached(&[2, 0, 5]));
        assert!(!special.reached(&[2, 0, 3]));
        // After a character left unfinished.
        assert!(blank.reached(&[4, 1]));
        assert!(!blank.reached(&[4, 0]));
    }

    #[test]
    fn a_word_is_found_with_or_without_its_leading_space() {
        let wait = stops(&["Wait"]);
        assert!(wait.reached(&[2, 6]));
        assert!(wait.reached(&[2, 7]));
        assert!(!wait.reached(&[2, 3]));
        let spaced = stops(&[" Wait"]);
        assert!(spaced.reached(&[2, 7]));
        assert!(spaced.reached(&[3, 0, 7]));
        assert!(!spaced.reached(&[0, 6]));
    }

    #[test]
    fn a_stop_string_that_is_a_special_token_is_found() {
        let close = stops(&["</think>"]);
        assert!(close.reached(&[2, 3, 8]));
        assert!(!close.reached(&[2, 3, 5]));
        // A special token's text does not hide the plain text around it.
        let wait = stops(&["one\nWait"]);
        assert!(wait.reached(&[3, 0, 8, 6]));
    }

    #[test]
    fn any_of_several_stop_strings_ends_it() {
        let both = stops(&["one", "\n\n"]);
        assert_eq!(both.found(&[2, 3]), Some("one"));
        assert_eq!(both.found(&[6, 1]), Some("\n\n"));
        assert_eq!(both.found(&[6]), None);
        assert!(both.reached(&[2, 3]));
        assert!(both.reached(&[6, 1]));
        assert!(!both.reached(&[6, 7, 0]));
    }

    #[test]
    fn the_end_read_reaches_back_past_short_tokens() {
        // "Step one\nStep one" written a token at a time: the stop string spans five tokens.
        let long = stops(&["one\nStep one"]);
        assert!(!long.reached(&[2, 3, 0, 2]));
        assert!(long.reached(&[2, 3, 0, 2, 3]));
    }

    #[test]
    fn empty_stop_strings_are_none() {
        assert!(StopStrings::new(&[], toy()).is_none());
        assert!(StopStrings::new(&[String::new()], toy()).is_none());
        let one = StopStrings::new(&[String::new(), "one".into()], toy()).unwrap();
        assert!(!one.reached(&[2]));
        assert!(one.reached(&[3]));
    }
}
