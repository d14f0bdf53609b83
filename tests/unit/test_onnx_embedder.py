"""The ONNX embedder: vectors, and the session preloaded on a thread at Lambda init."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semcache.adapters import onnx_embedder
from semcache.adapters.onnx_embedder import OnnxEmbedder
from semcache.core.errors import EmbedderError


def make(model_dir: Path, threads: int = 1) -> OnnxEmbedder:
    return OnnxEmbedder(model_dir / "model.onnx", model_dir / "tokenizer.json", name="m", threads=threads)


def test_vectors_are_unit_length_and_paraphrases_are_closer(model_dir: Path) -> None:
    v = make(model_dir).embed(["How do I learn Python?", "What is the best way to learn Python?", "Paris weather"])
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2]


def test_prepared_texts_embed_as_the_texts_do_tokenised_once(model_dir: Path) -> None:
    embedder = make(model_dir)
    texts = ["Hi", "How do I learn Python quickly and well?", "Paris weather"]
    prepared = [embedder.prepare(t) for t in texts]
    assert [len(p) if p is not None else None for p in prepared] == [3, 11, 4]  # [CLS] and [SEP] included
    assert np.allclose(embedder.embed_prepared(prepared), embedder.embed(texts), atol=1e-5)  # type: ignore[arg-type]
    assert embedder.embed_prepared([]).shape == (0, 384)


def test_a_text_longer_than_the_model_reads_is_not_prepared(model_dir: Path) -> None:
    """embed() cuts such a text to its first 256 word pieces, so that two texts differing only after them get one
    vector: prepare() says None instead, whether the text has more words than that or fewer, longer ones."""
    embedder = make(model_dir)
    limit = onnx_embedder.DEFAULT_MAX_TOKENS
    fits = embedder.prepare("word " * (limit - 2))
    assert fits is not None
    assert len(fits) == limit
    assert embedder.prepare("word " * (limit - 1)) is None  # one word piece too many (told by its words alone)
    assert embedder.prepare("a," * limit) is None  # one word of 2 * 256 word pieces (told by its tokens)
    assert embedder.prepare("a," * ((limit - 2) // 2)) is not None
    long = "Context: " + "Acme makes pumps and valves for water plants. " * 40
    where, what = long + "Question: where is Acme?", long + "Question: what does Acme make?"
    assert np.allclose(*embedder.embed([where, what])), "what the model cannot read, it cannot tell apart"
    assert embedder.prepare(where) is None
    assert embedder.prepare(what) is None


def test_unread_names_what_the_model_maps_to_its_unknown_token(model_dir: Path) -> None:
    embedder = make(model_dir)
    # all-MiniLM-L6-v2's vocabulary holds 244 of the 20,991 common Chinese characters: these two questions are the
    # same tokens to it, so the same vector.
    ml, dl = "什么是机器学习?", "什么是深度学习?"
    assert embedder.unread(ml) == ("什", "么", "是", "机", "器", "习")
    assert embedder.unread(dl) == ("什", "么", "是", "深", "度", "习")
    assert np.allclose(*embedder.embed([ml, dl]))
    assert embedder.unread("How do I type 😀 on a Mac?") == ("😀",)
    # read: ASCII (through the fast path), accented Latin
    for text in ("How do I reverse a list in Python?", "Où est la gare ?", ""):
        assert embedder.unread(text) == ()
    # A script it reads letter by letter (its vocabulary holds the letters, few of the words): every word is unread.
    # To the model, "convert a string to a number" and "a number to a string" in Russian are cosine 0.996 apart.
    assert embedder.unread("Как перевести строку в число в Python?") == (
        "Как", "перевести", "строку", "в", "число", "в", "Python"
    )  # fmt: skip
    assert embedder.unread("Ποια είναι η πρωτεύουσα της Γαλλίας;")[-1] == "Γαλλίας"
    for read in ("¿Cuántos años tiene el universo?", "Nasıl hızlı kilo verebilirim?", "Jak szybko schudnąć?"):
        assert embedder.unread(read) == (), read  # Latin scripts: word pieces, not letters
    word = "x" * 101  # WordPiece gives up on a word of more than 100 characters, ASCII or not
    assert embedder.unread(f"What does {word} mean?") == (word,)
    assert embedder.unread(f"What does {word[:100]} mean?") == ()


def test_unread_reads_any_text_without_failing(model_dir: Path) -> None:
    embedder = make(model_dir)

    @settings(max_examples=300, deadline=None)
    @given(text=st.text(max_size=300))
    def reads(text: str) -> None:
        assert all(isinstance(part, str) and part for part in embedder.unread(text))

    reads()


def key(model_dir: Path, threads: int = 1) -> tuple[str, str, int]:
    return (str((model_dir / "model.onnx").resolve()), str((model_dir / "tokenizer.json").resolve()), threads)


def test_the_embedder_takes_the_preloaded_session_and_tokenizer_for_the_same_files_and_threads(
    model_dir: Path,
) -> None:
    onnx_embedder.preload(model_dir / "model.onnx", threads=1)
    preloaded = onnx_embedder._preloaded[key(model_dir)].result(timeout=60)
    embedder = make(model_dir)
    assert embedder._session is preloaded.session
    assert embedder._tokenizer is preloaded.tokenizer
    assert key(model_dir) not in onnx_embedder._preloaded, "a preload is handed out once"
    plain = make(model_dir)
    assert plain._session is not preloaded.session
    texts = ["What is the capital of France?"]
    assert np.allclose(embedder.embed(texts), plain.embed(texts), atol=1e-6)


def test_a_preload_for_other_settings_is_not_taken(model_dir: Path) -> None:
    onnx_embedder.preload(model_dir / "model.onnx", threads=2)
    try:
        embedder = make(model_dir, threads=1)
        assert embedder._session is not onnx_embedder._preloaded[key(model_dir, 2)].result(timeout=60).session
    finally:
        onnx_embedder._preloaded.pop(key(model_dir, 2), None)


def test_a_failed_preload_leaves_the_embedder_to_report_the_problem(tmp_path: Path, model_dir: Path) -> None:
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not a model")
    (tmp_path / "tokenizer.json").write_bytes((model_dir / "tokenizer.json").read_bytes())
    onnx_embedder.preload(broken)
    onnx_embedder._preloaded[key(tmp_path)].exception(timeout=60)
    with pytest.raises(EmbedderError, match="cannot load the ONNX model"):
        make(tmp_path)
    (tmp_path / "model.onnx").write_bytes((model_dir / "model.onnx").read_bytes())
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(EmbedderError, match="cannot load the tokenizer"):
        make(tmp_path)
    with pytest.raises(EmbedderError, match="not found"):
        make(tmp_path / "missing")


def test_the_id_follows_the_model_files_content(tmp_path: Path, model_dir: Path) -> None:
    import onnx

    (tmp_path / "tokenizer.json").write_bytes((model_dir / "tokenizer.json").read_bytes())
    model = onnx.load(str(model_dir / "model.onnx"))
    weight = next(i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.raw_data) > 1)
    raw = bytearray(weight.raw_data)
    raw[0] = (raw[0] + 1) % 256  # one int8 weight changed: another model of the very same size
    weight.raw_data = bytes(raw)
    onnx.save(model, str(tmp_path / "model.onnx"))
    assert (tmp_path / "model.onnx").stat().st_size == (model_dir / "model.onnx").stat().st_size
    assert make(tmp_path).id != make(model_dir).id
    assert make(model_dir).id == make(model_dir).id
