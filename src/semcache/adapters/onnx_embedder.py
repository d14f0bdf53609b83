"""An Embedder on onnxruntime and tokenizers: all-MiniLM-L6-v2 (int8) by default, mean-pooled, L2-normalised."""

from __future__ import annotations

import hashlib
import platform
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer

from semcache.core.errors import EmbedderError

DEFAULT_MAX_TOKENS = 256
"""all-MiniLM-L6-v2 was trained on sequences of at most 256 word pieces; longer input is truncated."""


_preloaded: dict[tuple[str, int], Future[tuple[ort.InferenceSession, str]]] = {}


def _load(model_path: Path, threads: int) -> tuple[ort.InferenceSession, str]:
    """The session, and the sha256 of the model file (read once; hashing releases the GIL too)."""
    blob = model_path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"]), digest


def preload(model_path: Path, threads: int = 1) -> None:
    """Start building the session for this file on a thread, now.

    onnxruntime releases the GIL while it loads and optimises a model (about 0.4 s here), so a Lambda handler that
    calls this before importing the web stack gets the session for free while those imports run. The OnnxEmbedder
    made later for the same file and thread count takes this session; any other builds its own.
    """
    key = (str(model_path.resolve()), threads)
    if key in _preloaded:
        return
    future: Future[tuple[ort.InferenceSession, str]] = Future()

    def build() -> None:
        try:
            session, digest = _load(model_path, threads)
            one = np.ones((1, 2), dtype=np.int64)  # a first run allocates its arenas: not on the first request
            names = {i.name for i in session.get_inputs()}
            session.run(None, {n: one if n != "token_type_ids" else np.zeros_like(one) for n in names})
            future.set_result((session, digest))
        except BaseException as exc:  # noqa: BLE001  (handed over: the embedder then builds its own, and reports)
            future.set_exception(exc)

    _preloaded[key] = future
    threading.Thread(target=build, name="semcache-onnx-preload", daemon=True).start()


def _take_preloaded(model_path: Path, threads: int) -> tuple[ort.InferenceSession, str] | None:
    future = _preloaded.pop((str(model_path.resolve()), threads), None)
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
        try:
            self._session, digest = _take_preloaded(model_path, threads) or _load(model_path, threads)
        except Exception as exc:  # onnxruntime's own exception types (Fail, InvalidProtobuf, ...)
            raise EmbedderError(f"cannot load the ONNX model {model_path}: {exc}") from exc
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_truncation(max_length=max_tokens)
        self._tokenizer.enable_padding()
        self._dim = int(self._session.get_outputs()[0].shape[-1])
        # The id changes with the model file's content, the truncation length and the CPU architecture: vectors of
        # another model (a retrained adapter, say) go to another index and are never compared with these, and
        # neither are those of the same int8 model computed by another architecture's integer kernels (x86's
        # AVX2 GEMM rounds differently from arm64's).
        stamp = hashlib.sha256(f"{digest}|{max_tokens}|{platform.machine()}".encode()).hexdigest()[:10]
        self._id = f"{name}@{stamp}"

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
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.asarray(pooled / np.clip(norms, 1e-12, None), dtype=np.float32)
