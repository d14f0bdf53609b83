from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semcache.adapters.memory_store import MemoryStore
from semcache.core.fingerprint import normalize_text
from semcache.core.freshness import FreshnessPolicy, is_volatile, quotes_dates_or_prices
from semcache.core.language import looks_english
from semcache.core.models import CacheControl, CacheMode, Message, Prompt
from semcache.core.service import CacheService, Policy
from semcache.core.verifier import LEXICAL_FEATURES, RULES, Verifier, lexical_features, veto, vetoed
from tests.fakes import BagOfWordsEmbedder, ScriptedLLM

pytestmark = pytest.mark.anyio


def constant_verifier(probability_logit: float, dim: int = 64, threshold: float = 0.5) -> Verifier:
    n = 1 + 2 * dim + LEXICAL_FEATURES
    return Verifier(
        version="test",
        mean=np.zeros(n, np.float32),
        scale=np.ones(n, np.float32),
        w1=np.zeros((n, 4), np.float32),
        b1=np.zeros(4, np.float32),
        w2=np.zeros(4, np.float32),
        b2=probability_logit,
        threshold=threshold,
        min_cosine=0.5,
    )


def ask(text: str) -> Prompt:
    return Prompt(model="m", messages=(Message("user", text),))


def service(policy: Policy, llm: ScriptedLLM | None = None) -> CacheService:
    return CacheService(embedder=BagOfWordsEmbedder(), store=MemoryStore(), llm=llm or ScriptedLLM(), policy=policy)


@pytest.mark.parametrize(
    ("question", "volatile"),
    [
        ("What is the weather in Paris today?", True),
        ("Who is the current president of France?", True),
        ("What is the latest iPhone?", True),
        ("Who won last night?", True),
        ("Where do penguins live?", False),
        ("What is electric current?", False),
        ("How do I reset my Gmail password?", False),
        # session 14: what the rule missed in a probe, and look-alikes it must not take
        ("What year is it?", True),
        ("Is Twitter down?", True),
        ("How much is bitcoin worth?", True),
        ("Who is the richest person in the world?", True),
        ("How many subscribers does MrBeast have?", True),
        ("Is it bad to lie down after eating?", False),
        ("Who was the richest person in history?", False),
        ("How many followers did Jesus have?", False),
        ("How much is too much water?", False),
        ("What is Apple worth?", True),  # session 19: as "how much is X worth"
        ("Is the stock market open?", True),  # and whether a place is open or closed, as whether a service is down
        ("Are banks closed?", True),
        ("Is Linux open source?", False),
        ("Is the Louvre open on Mondays?", False),
        ("What is worth doing in Paris?", False),
        ("What is it worth it to learn Latin?", False),
        # session 19: other languages (none was detected before), and their words that are not time words
        ("¿Qué tiempo hace hoy en Sevilla?", True),
        ("Quel est le cours du bitcoin ?", True),
        ("Wer ist derzeit Bundeskanzler?", True),
        ("Какой сейчас курс евро?", True),
        ("上海明天会下雨吗?", True),
        ("今日の天気は?", True),
        ("오늘 날씨 어때요?", True),
        ("Wie komme ich hier zum Bahnhof?", False),  # "hier" is "here" in German, "yesterday" in French
        ("Was ist eine gerade Zahl?", False),  # "gerade": "right now", and "even"
        ("What is the actual cost of a college degree?", False),  # "actual": Spanish "current", not English
        ("¿Cuál es el último libro de la Biblia?", False),
        ("为什么天空是蓝色的?", False),
    ],
)
def test_volatile_questions(question: str, volatile: bool) -> None:
    assert is_volatile(question) is volatile


@pytest.mark.parametrize(
    ("question", "english"),
    [
        ("How do I reverse a linked list in Python?", True),
        ("python list comprehension", True),  # no function words: English, as most such queries are
        ("What does 'de facto' mean?", True),
        ("What is the meaning of 'je ne sais quoi'?", True),
        ("Nominal GDP per capita growth to real GDP per capita growth?", False),  # the one English text of qqp's
        ("If 3x + 9y = 7x + y. then 8y=?", True),  # "y" is Spanish "and" too: single letters do not count
        ("¿Cómo convertir una lista en una cadena en Python?", False),
        ("Comment apprendre le piano rapidement ?", False),
        ("Wie lerne ich schnell Deutsch?", False),
        ("Como ordenar uma lista em ordem crescente?", False),
        ("Hoe kan ik snel afvallen?", False),
        ("Как перевести строку в число в Python?", False),  # mostly another script
        ("什么是机器学习?", False),
        ("How do I type 😀 on a Mac?", True),
        ("What does 呵呵 mean in Chinese internet slang?", True),
        ("Translate 'la casa es grande' into English", True),  # what is quoted is data, not the question's language
        ("¿Qué significa 'hello' en español?", False),
    ],
)
def test_questions_in_other_languages_are_told_from_english(question: str, english: bool) -> None:
    assert looks_english(question) is english


async def test_a_question_in_another_language_is_served_only_to_an_exact_repeat() -> None:
    # The fake embedder reads the two as one bag of words, as the real matcher served them (roles swapped, 0.93)
    stored, swapped = "como convertir una lista en una cadena", "como convertir una cadena en una lista"
    svc = service(Policy(min_similarity=0.5))
    first = await svc.answer(ask(stored), tenant="t")
    assert first.cache.status == "miss"
    other = await svc.answer(ask(swapped), tenant="t")
    assert (other.cache.status, other.cache.reason) == (
        "miss",
        "not in English: served only to an exact repeat (the matcher is trained on English)",
    )
    assert (await svc.answer(ask(stored), tenant="t")).cache.tier == "exact"
    # stored without a vector, even by a refresh: never another question's candidate either
    store = MemoryStore()
    svc = CacheService(embedder=BagOfWordsEmbedder(), store=store, llm=ScriptedLLM(), policy=Policy())
    refreshed = await svc.answer(ask(stored), CacheControl(mode=CacheMode.REFRESH), tenant="t")
    kept = await store.get_with_vector(str(refreshed.cache.entry_id))
    assert kept is not None
    assert kept[1] is None
    # an operator who opts in gets the semantic tier for every language (entries stored since then have vectors)
    anything = service(Policy(min_similarity=0.5, any_language=True))
    await anything.answer(ask(stored), tenant="t")
    assert (await anything.answer(ask(swapped), tenant="t")).cache.tier == "semantic"


def test_dated_answers() -> None:
    assert quotes_dates_or_prices("It costs $4.99 as of March 3")
    assert quotes_dates_or_prices("The 2024 results were close")
    assert not quotes_dates_or_prices("Boil it for ten minutes.")
    # other languages (session 19): a year or a date in CJK writing (no word boundary before 年), a price in yuan
    assert quotes_dates_or_prices("该公司成立于2024年。")
    assert quotes_dates_or_prices("발매일은 3월 5일입니다")
    assert quotes_dates_or_prices("价格约为5000元")
    assert quotes_dates_or_prices("Actualmente cuesta unos 300 pesos.")
    assert not quotes_dates_or_prices("把米洗净, 加水煮二十分钟。")


def test_freshness_policy_ttls() -> None:
    policy = FreshnessPolicy(volatile_ttl_seconds=60, dated_answer_ttl_seconds=3600)
    assert policy.ttl(True, "sunny", 86400) == (60, "volatile")
    assert policy.ttl(False, "It was $5 in 2019", 86400) == (3600, "dated")
    assert policy.ttl(False, "Rayleigh scattering", 86400) == (86400, "evergreen")
    assert policy.ttl(False, "Rayleigh scattering", 10) == (10, "evergreen")


def test_a_ttl_the_caller_asked_for_wins_over_the_rules() -> None:
    policy = FreshnessPolicy(volatile_ttl_seconds=0, dated_answer_ttl_seconds=3600)
    assert policy.ttl(True, "sunny", 86400, 600) == (600, "volatile")
    assert policy.ttl(False, "It was $5 in 2019", 86400, 7200) == (7200, "dated")
    assert policy.ttl(False, "Rayleigh scattering", 86400, 30) == (30, "evergreen")
    assert policy.ttl(True, "sunny", 86400) == (0, "volatile")  # never stored without it
    assert not policy.may_store(True)
    assert policy.may_store(True, 600)
    assert policy.may_store(False)


async def test_volatile_questions_get_the_short_ttl_and_no_semantic_hits() -> None:
    svc = service(Policy(min_similarity=0.5, freshness=FreshnessPolicy(volatile_ttl_seconds=60)))
    first = await svc.answer(ask("what is the weather in paris today"), tenant="t")
    assert (first.cache.ttl_seconds, first.cache.freshness) == (60, "volatile")
    assert (await svc.answer(ask("what is the weather in paris today"), tenant="t")).cache.tier == "exact"
    near = await svc.answer(ask("what is the weather in paris today please"), tenant="t")
    assert near.cache.status == "miss", "a paraphrase of a volatile question must not be served"


async def test_a_follow_up_to_a_time_sensitive_question_is_time_sensitive_too() -> None:
    # The conversation as some clients send it, the user's turns only: its prefix is the same tomorrow, so "and in
    # london?" stored for the evergreen TTL would be served tomorrow's asker today's weather.
    svc = service(Policy(ttl_seconds=86400, freshness=FreshnessPolicy(volatile_ttl_seconds=60)))
    turns = (Message("user", "what is the weather in paris today"), Message("user", "and in london?"))
    follow_up = await svc.answer(Prompt(model="m", messages=turns), tenant="t")
    assert (follow_up.cache.ttl_seconds, follow_up.cache.freshness) == (60, "volatile")
    evergreen = (Message("user", "how do I boil an egg"), Message("user", "and a duck egg?"))
    assert (await svc.answer(Prompt(model="m", messages=evergreen), tenant="t")).cache.ttl_seconds == 86400


async def test_volatile_ttl_zero_means_not_cached() -> None:
    svc = service(Policy(freshness=FreshnessPolicy(volatile_ttl_seconds=0)))
    first = await svc.answer(ask("who won last night"), tenant="t")
    assert first.cache.status == "miss"
    assert first.cache.reason == "time-sensitive question: not cached"
    assert (await svc.answer(ask("who won last night"), tenant="t")).cache.status == "miss"


async def test_a_volatile_question_in_compatibility_characters_is_judged_as_the_cache_keys_it() -> None:
    # Fullwidth letters fold to ASCII in the text the exact tier keys on: the store must judge that text too, or
    # the answer would be kept for the evergreen TTL and served to the plain question for days.
    svc = service(Policy(freshness=FreshnessPolicy(volatile_ttl_seconds=60)))
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if c != " " else c for c in "weather today")  # U+FF41...
    stored = await svc.answer(ask(f"what is the {fullwidth} in oslo"), tenant="t")
    assert (stored.cache.ttl_seconds, stored.cache.freshness) == (60, "volatile")
    plain = await svc.answer(ask("what is the weather today in oslo"), tenant="t")
    assert plain.cache.tier == "exact"
    assert plain.cache.ttl_seconds is not None
    assert plain.cache.ttl_seconds <= 60


async def test_dated_answers_get_the_shorter_ttl() -> None:
    llm = ScriptedLLM()
    llm.reply = "It cost $3 in 2021."
    svc = service(Policy(ttl_seconds=604800, freshness=FreshnessPolicy(dated_answer_ttl_seconds=3600)), llm)
    stored = await svc.answer(ask("how much was a coffee in rome"), tenant="t")
    assert (stored.cache.ttl_seconds, stored.cache.freshness) == (3600, "dated")


async def test_an_explicit_ttl_is_the_callers_choice() -> None:
    svc = service(Policy(freshness=FreshnessPolicy(volatile_ttl_seconds=60)))
    stored = await svc.answer(ask("weather in oslo today"), CacheControl(ttl_seconds=600), tenant="t")
    assert stored.cache.ttl_seconds == 600


async def test_the_verifier_decides_semantic_hits() -> None:
    rejecting = service(Policy(min_similarity=0.5, verifier=constant_verifier(-10.0)))
    await rejecting.answer(ask("how do I reset my gmail password"), tenant="t")
    near = await rejecting.answer(ask("how do I reset my gmail password please"), tenant="t")
    assert near.cache.status == "miss"

    accepting = service(Policy(min_similarity=0.5, verifier=constant_verifier(10.0)))
    await accepting.answer(ask("how do I reset my gmail password"), tenant="t")
    near = await accepting.answer(ask("how do I reset my gmail password please"), tenant="t")
    assert (near.cache.status, near.cache.tier) == ("hit", "semantic")
    assert near.cache.confidence == pytest.approx(1.0, abs=1e-3)
    # the floor still applies before the verifier is asked
    assert (await accepting.answer(ask("what is the boiling point of water"), tenant="t")).cache.status == "miss"


def falling_verifier() -> Verifier:
    """A real Verifier whose probability falls as the cosine rises, sigmoid(19 - 20 * cosine): it accepts pairs
    below 0.95, and is the more confident the farther apart they are."""
    n = 1 + 2 * 64 + LEXICAL_FEATURES
    w1 = np.zeros((n, 1), np.float32)
    w1[0, 0] = 1.0
    return Verifier(version="test", mean=np.zeros(n, np.float32), scale=np.ones(n, np.float32), w1=w1,
                    b1=np.zeros(1, np.float32), w2=np.array([-20.0], np.float32), b2=19.0, threshold=0.5,
                    min_cosine=0.3)  # fmt: skip


async def test_of_the_candidates_the_verifier_accepts_the_nearest_is_served() -> None:
    # With 3 candidates, both stored questions pass, and the farther one is the more confident: the nearest
    # accepted one is served.
    verifier = falling_verifier()
    svc = service(Policy(min_similarity=0.3, verifier=verifier, candidates=3))
    near_q, far_q = "how do I bake bread at home", "how do I bake bread"
    for q in (near_q, far_q):  # each stored (refresh: the second would otherwise be served by the first)
        await svc.answer(ask(q), CacheControl(mode=CacheMode.REFRESH), tenant="t")
    asked = await svc.answer(ask("how do I bake bread at home quickly"), tenant="t")
    assert (asked.cache.status, asked.cache.matched_query) == ("hit", near_q)
    other = verifier.score("how do I bake bread at home quickly", far_q, *(svc.embedder.embed(
        ["how do I bake bread at home quickly", far_q])))  # fmt: skip
    assert asked.cache.confidence is not None
    assert 0.5 <= asked.cache.confidence < other, "the farther question was the more confident: not served"


async def test_only_the_nearest_stored_question_is_judged_by_default() -> None:
    # If the nearest stored question is not the same question, a farther one rarely is: by default it is not
    # offered. (Asked: cosine 0.97 to the nearest, which this verifier rejects; 0.65 to the farther, accepted.)
    near_q, far_q = "how do i bake a loaf of bread at home with butter", "how do i bake bread"
    asked_q = "how do i bake a loaf of bread at home with butter please"
    for candidates, expected in ((1, None), (3, far_q)):
        svc = service(Policy(min_similarity=0.3, verifier=falling_verifier(), candidates=candidates))
        for q in (near_q, far_q):
            await svc.answer(ask(q), CacheControl(mode=CacheMode.REFRESH), tenant="t")
        got = await svc.answer(ask(asked_q), tenant="t")
        assert (got.cache.status, got.cache.matched_query) == (
            ("miss", None) if expected is None else ("hit", expected)
        )
    assert Policy().candidates == 1


async def test_per_request_confidence_threshold() -> None:
    svc = service(Policy(min_similarity=0.5, verifier=constant_verifier(0.0)))  # p = 0.5 for every pair
    await svc.answer(ask("how do I reset my gmail password"), tenant="t")
    strict = CacheControl(min_confidence=0.9)
    assert (await svc.answer(ask("how do I reset my gmail password please"), strict, tenant="t")).cache.status == "miss"
    lax = CacheControl(min_confidence=0.4)
    assert (await svc.answer(ask("how do I reset my gmail password please"), lax, tenant="t")).cache.status == "hit"


def test_lexical_features_see_what_embeddings_blur() -> None:
    same = lexical_features("How do I reset my Gmail password?", "How do I reset my Gmail password?")
    other = lexical_features("How do I reset my Gmail password?", "How do I reset my Yahoo password?")
    numbers = lexical_features("Is 2 a prime?", "Is 9 a prime?")
    negation = lexical_features("Is it safe?", "Is it not safe?")
    assert same[0] == 1.0
    assert other[0] < 1.0
    assert other[10] > same[10], "a different capitalised name"
    assert numbers[6] == 1.0
    assert negation[8] == 1.0


def test_verifier_round_trips_through_its_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    v = constant_verifier(2.0)
    v.save(tmp_path / "v.npz")
    loaded = Verifier.load(tmp_path / "v.npz")
    x = np.random.default_rng(0).normal(size=(3, v.mean.shape[0])).astype(np.float32)
    assert np.allclose(v.probability(x), loaded.probability(x), atol=1e-3)
    assert (loaded.threshold, loaded.min_cosine, loaded.version) == (0.5, 0.5, "test")


def test_one_candidate_is_scored_as_a_batch_scores_it() -> None:
    # The hit path scores its one candidate with the last steps in Python floats (Verifier._probability_of_one);
    # several go through probability() in float32. A verdict is scored the same way as the hit it judges, but the
    # evaluation scores in batches: the two must agree, for one network and for an ensemble.
    dim, f32, rng = 64, np.float32, np.random.default_rng(2)
    n = 1 + 2 * dim + LEXICAL_FEATURES
    texts = ["How do I reset my Gmail password?", "What's the way to change my Gmail password?", "Is 2 a prime?"]
    for members, hidden in ((1, 8), (4, 8)):
        w2 = rng.normal(size=(members, hidden) if members > 1 else hidden).astype(f32)
        b2 = rng.normal(size=members).astype(f32) if members > 1 else float(rng.normal())
        v = Verifier("t", rng.normal(size=n).astype(f32), (1 + rng.random(n)).astype(f32),
                     (0.3 * rng.normal(size=(n, members * hidden))).astype(f32),
                     rng.normal(size=members * hidden).astype(f32), w2, b2, 0.5, 0.5)  # fmt: skip
        u, *vs = (x / np.linalg.norm(x) for x in rng.normal(size=(1 + len(texts), dim)).astype(f32))
        batch = v.networks("How do I reset my password?", texts, u, vs)
        alone = [v.networks("How do I reset my password?", [t], u, [w])[0] for t, w in zip(texts, vs, strict=True)]
        assert np.allclose(alone, batch, atol=1e-6, rtol=0)
        assert max(batch) - min(batch) > 0.01, "the candidates score differently: a real comparison"
        assert all(0.001 < p < 0.999 for p in batch), "and none saturated"


def test_an_ensemble_averages_its_networks_probabilities(tmp_path) -> None:  # type: ignore[no-untyped-def]
    n, hidden = 1 + 2 * 64 + LEXICAL_FEATURES, 4
    rng = np.random.default_rng(1)
    networks = [(rng.normal(size=(n, hidden)), rng.normal(size=hidden), rng.normal(size=hidden), rng.normal())
                for _ in range(3)]  # fmt: skip

    def one(w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: float) -> Verifier:
        f32 = np.float32
        return Verifier("one", np.zeros(n, f32), np.ones(n, f32), w1.astype(f32), b1.astype(f32), w2.astype(f32),
                        b2, 0.5, 0.5)  # fmt: skip

    ensemble = Verifier(
        "ens", np.zeros(n, np.float32), np.ones(n, np.float32),
        np.hstack([w1 for w1, _, _, _ in networks]).astype(np.float32),
        np.concatenate([b1 for _, b1, _, _ in networks]).astype(np.float32),
        np.vstack([w2 for _, _, w2, _ in networks]).astype(np.float32),
        np.array([b2 for _, _, _, b2 in networks], np.float32), 0.5, 0.5,
    )  # fmt: skip
    assert ensemble.members == 3
    x = rng.normal(size=(5, n)).astype(np.float32)
    each = np.array([one(*network).probability(x) for network in networks])
    assert np.allclose(ensemble.probability(x), each.mean(axis=0), atol=1e-6)
    assert not np.allclose(each[0], each[1]), "the networks differ, so the mean is a real test"
    ensemble.save(tmp_path / "e.npz")
    loaded = Verifier.load(tmp_path / "e.npz")
    assert loaded.members == 3
    assert np.allclose(loaded.probability(x), ensemble.probability(x), atol=2e-3)  # w1 is stored in float16
    with pytest.raises(ValueError, match="inconsistent verifier shapes"):
        Verifier("bad", ensemble.mean, ensemble.scale, ensemble.w1, ensemble.b1, np.zeros((2, hidden)), [0.0, 0.0],
                 0.5, 0.5)  # fmt: skip


def test_scoring_candidates_together_equals_scoring_each() -> None:
    from semcache.core.verifier import DEFAULT_PATH

    verifier = Verifier.load(DEFAULT_PATH)
    rng = np.random.default_rng(3)
    u = rng.normal(size=384).astype(np.float32)
    u /= np.linalg.norm(u)
    candidates = ["how do i learn python", "top 10 films of 2020", "how can i learn python fast"]
    vs = []
    for _ in candidates:
        v = u + rng.normal(scale=0.3, size=384).astype(np.float32)
        vs.append((v / np.linalg.norm(v)).astype(np.float32))
    query = "what is the best way to learn python"
    together = verifier.score_many(query, candidates, u, vs)

    # each pair on its own, features written out here (not the service's feature_matrix), through the network and
    # the vetoes (score() delegates to score_many: no reference)
    def features(c: str, v: np.ndarray) -> np.ndarray:
        return np.concatenate([[np.float32(u @ v)], u * v, np.abs(u - v), lexical_features(query, c)])

    one_by_one = [
        0.0 if vetoed(query, c) else float(verifier.probability(features(c, v))[0])
        for c, v in zip(candidates, vs, strict=True)
    ]
    assert np.allclose(together, one_by_one, atol=1e-6)
    assert verifier.score_many("top 5 films of 2020", ["top 10 films of 2020"], u, [u]) == [0.0], "numbers differ"
    # networks(): the same networks without the rules, for a caller that applied veto() itself
    plain = verifier.networks(query, candidates, u, vs)
    assert [x for c, x in zip(candidates, plain, strict=True) if not vetoed(query, c)] == pytest.approx(
        [x for c, x in zip(candidates, together, strict=True) if not vetoed(query, c)], abs=1e-6
    )
    assert verifier.networks("top 5 films of 2020", ["top 10 films of 2020"], u, [u])[0] > 0.0
    assert verifier.score_many(query, [], u, []) == []


@pytest.mark.parametrize(
    ("query", "candidate"),
    [
        ("How do I convert a list to a string in Python?", "How do I convert a string to a list in Python?"),
        ("How to convert a list to a string in Python?", "How to convert a string to a list in Python?"),
        ("What projects were ported from .NET to Java?", "What projects were ported from Java to .NET?"),
        ("Why is Messi better than Ronaldo?", "How is Ronaldo better than Messi?"),
        ("Cheap flights from London to Paris", "Cheap flights from Paris to London"),
        ("Is it safe to drive from California to Texas?", "How safe is it to drive from Texas to California?"),
        ("How long does it take to fly from London to Paris?", "How long does it take to fly from Paris to London?"),
        ("Do you believe in life after death?", "Do you believe in death after life?"),
        ("Which reagent converts ethanol into ethanoic acid?", "Which reagent converts ethanoic acid to ethanol?"),
        # session 19: in a count, "in" gives roles (served at 0.81), units singular or plural
        ("How many cups are in a liter?", "How many liters are in a cup?"),
        ("How many ounces in a pound?", "How many pounds are in one ounce?"),
    ],
)
def test_the_same_words_in_swapped_roles_are_never_served(query: str, candidate: str) -> None:
    # Mean-pooled embeddings and the word-set features barely tell these apart (the first pair scored 0.99 in `make
    # run`): the verifier vetoes them whatever its networks say.
    assert vetoed(query, candidate)
    assert vetoed(candidate, query)
    verifier = constant_verifier(10.0)
    u = np.ones(64, np.float32) / 8.0
    assert verifier.score(query, candidate, u, u) == 0.0
    assert verifier.score(query, query, u, u) > 0.99


@pytest.mark.parametrize(
    ("query", "candidate"),
    [
        ("How do I convert a list to a string in Python?", "Python: turn a list into a string"),
        ("In Python, how do I convert a list to a string?", "How do I convert a list to a string in Python?"),
        ("How do I move from India to Canada?", "How do I move to Canada from India?"),
        ("How far is the Sun from Earth?", "How far is Earth from the Sun?"),  # a relation the same both ways
        ("How do I connect an Android app to MySQL?", "How do I connect MySQL to an Android app?"),
        ("Can the receiving end current be greater than the sending end current?",
         "Can the sending end current be smaller than the receiving end current?"),  # the comparison turned round
        ("What is the best way to learn to code?", "How do I learn to code?"),
        ("How many people live in New York?", "How many people in New York live there?"),
        ("How many cups are in a liter?", "How many cups does a liter hold?"),
    ],
)  # fmt: skip
def test_reordered_words_that_keep_their_roles_are_not_vetoed(query: str, candidate: str) -> None:
    assert not vetoed(query, candidate)
    assert not vetoed(candidate, query)


@pytest.mark.parametrize(
    ("query", "candidate", "rule"),
    [
        ("SQL query to find the second highest salary", "SQL query to find the third highest salary", "numbers"),
        ("SQL query to find the 2nd highest salary", "SQL query to find the third highest salary", "numbers"),
        ("Give me three reasons to learn Rust", "Give me five reasons to learn Rust", "numbers"),
        ("Give me three reasons to learn Rust", "Give me some reasons to learn Rust, 5 of them", "numbers"),
        ("What are the symptoms of type 1 diabetes?", "What are the symptoms of type 2 diabetes?", "numbers"),
        ("Struggles of a woman in her forties", "Struggles of a woman in her fifties", "numbers"),
        # the same number, in words or digits
        ("Give me three reasons to learn Rust", "Give me 3 reasons to learn Rust", None),
        ("Write a SQL query for the second highest salary", "SQL query: the 2nd highest salary", None),
        # a number on one side only is left to the networks (they weigh it: session 14, docs/quality.md)
        ("Explain quantum computing like I'm five", "Explain quantum computing in simple terms", None),
        ("What are the five best movies of all time?", "What are the best movies of all time?", None),
        ("What are the 5 best movies of all time?", "What are the best movies of all time?", None),
        # ...unless the other side names what is counted once (session 19: served at 0.91)
        ("How do I undo the last commit?", "How do I undo the last two commits?", "numbers"),
        ("What is the best movie of all time?", "What are the top 10 movies of all time?", "numbers"),
        ("Who won the 2016 election?", "Who won the election?", None),  # a year counts nothing
        # not counts: "one", "first", and "second" as a unit of time or in "second-hand"
        ("What is one of the best books on Go?", "What is a good book on Go?", None),
        ("What should I do on a first date?", "What should I do on a date?", None),
        ("Wait a second, what is a monad?", "Hold on, what is a monad?", None),
        ("Is a second-hand car worth it?", "Is a used car worth it?", None),
    ],
)
def test_numbers_written_as_words_count_as_numbers(query: str, candidate: str, rule: str | None) -> None:
    assert veto(query, candidate) == rule
    assert veto(candidate, query) == rule


@pytest.mark.parametrize(
    ("query", "candidate", "rule"),
    [
        ("What is 10²?", "What is 10³?", "numbers"),
        ("What is 10²?", "What is 102?", "numbers"),
        ("What is the derivative of x²?", "What is the derivative of x³?", "numbers"),
        ("How many cm² are in a m²?", "How many cm³ are in a m³?", "numbers"),
        ("Why is Na⁺ stable?", "Why is Na⁻ stable?", "numbers"),
        ("What is the integral of x⁻¹?", "What is the integral of x¹?", "numbers"),
        # the same power; and a power on one side only is left to the networks, like any number
        ("What is 10²?", "How much is 10²?", None),
        ("What is the derivative of x²?", "What is the derivative of x squared?", None),
        # subscripts are folded into digits by the normalisation, superscripts are not (fingerprint.normalize_text)
        (normalize_text("Why is H₂O polar?"), "Why is H2O polar?", None),
    ],
)
def test_superscripts_count_as_numbers_of_their_own(query: str, candidate: str, rule: str | None) -> None:
    assert veto(query, candidate) == rule
    assert veto(candidate, query) == rule


@pytest.mark.parametrize(
    ("query", "candidate", "rule"),
    [
        ("Solve x^2 + 5x + 6 = 0", "Solve x^2 - 5x + 6 = 0", "operators"),  # served at 0.91 before the rule
        ("What is 2+2?", "What is 2*2?", "operators"),
        ("What is 10/2?", "What is 10 * 2?", "operators"),
        ("What is C++ used for?", "What is C# used for?", "operators"),
        ("Convert $100 to euros", "Convert €100 to euros", "operators"),
        ("Is 0.1 + 0.2 == 0.3 in Python?", "Is 0.1 + 0.2 != 0.3 in Python?", "operators"),
        # the same operators, spaced or repeated otherwise; one side only; and prose, not a formula
        ("What is 2+2?", "What is 2 + 2?", None),
        ("What is the best C++ book for a C++ beginner?", "Best book to learn C++?", None),
        ("How much is $100 in euros?", "How much is 100 dollars in euros?", None),
        ("What should I tell my boyfriend/girlfriend?", "What should I tell my partner?", None),
        ("Is e-mail marketing dead?", "Is email marketing dead?", None),
        ("Why is state-of-the-art AI so expensive?", "Why is cutting-edge AI so expensive?", None),
    ],
)
def test_formulas_and_code_with_other_operators_are_never_served(query: str, candidate: str, rule: str | None) -> None:
    assert veto(query, candidate) == rule
    assert veto(candidate, query) == rule


@pytest.mark.parametrize(
    ("query", "candidate", "rule"),
    [
        # Opposites in a question that asks for more than yes or no: served at confidence 0.93 in `make run` before
        # the rule
        ("What are the positive effects of caffeine?", "What are the negative effects of caffeine?", "opposites"),
        ("What are the best movies of 2014?", "What are the worst movies of 2014?", "opposites"),
        ("What are the advantages of remote work?", "What are the disadvantages of remote work?", "opposites"),
        ("Why is Science Diet good for dogs?", "Why is Science Diet bad for dogs?", "opposites"),
        # opposite actions, in prompts the networks served at 0.79-0.98 (session 13, docs/quality.md)
        ("How do I sort a list in ascending order?", "How do I sort a list in descending order?", "opposites"),
        ("Write a formal email declining a meeting", "Write an informal email declining a meeting", "opposites"),
        ("How do I zoom in on a Mac?", "How do I zoom out on a Mac?", "opposites"),
        # ...with the stop words that go with them changed too ("to" / "from")
        ("How do I upload a file to S3 with boto3?", "How do I download a file from S3 with boto3?", "opposites"),
        ("How do I serialize an object to JSON in C#?", "How do I deserialize an object from JSON in C#?", "opposites"),
        # siblings rather than opposites, which the networks served at 0.80-0.88 (session 14, `semcache explain`)
        ("What is the time complexity of quicksort?", "What is the space complexity of quicksort?", "opposites"),
        ("How do I sort a dictionary by value in Python?", "How do I sort a dictionary by key in Python?", "opposites"),
        ("How long to boil an egg for a soft yolk?", "How long to boil an egg for a hard yolk?", "opposites"),
        ("What foods should I eat during pregnancy?", "What foods should I avoid during pregnancy?", "opposites"),
        ("How do I turn off dark mode in Chrome?", "How do I turn on dark mode in Chrome?", "opposites"),
        # two operations on one thing (served at 0.88-0.95 before session 15), not two words for one operation
        (
            "How to create a virtual environment in Python",
            "How to activate a virtual environment in Python",
            "opposites",
        ),
        (
            "How to check if a string contains a substring in Java",
            "How to check if a string starts with a substring in Java",
            "opposites",
        ),
        ("How do I deactivate my Facebook account?", "How do I delete my Facebook account?", "opposites"),
        ("How do I remove a directory in Linux?", "How do I delete a directory in Linux?", None),
        ("How do I upgrade pip?", "How do I update pip?", None),
        ("How do I start a business?", "How do I create a business?", None),  # "start": not listed, two meanings
        # comparisons turned round (served at 0.90-0.96), unless the sides of the "than" trade places too
        ("Which is bigger, the Moon or Mercury?", "Which is smaller, the Moon or Mercury?", "opposites"),
        ("Is Rust faster than Go?", "Is Rust slower than Go?", "opposites"),
        ("Is Go faster than Rust?", "Is Rust slower than Go?", None),
        ("What to eat before a workout?", "What to eat after a workout?", "opposites"),
        ("How do I raise my credit limit?", "How do I lower my credit limit?", "opposites"),
        ("Give me a synonym for big", "Give me an antonym for big", "opposites"),  # served at 0.94
        # two pairs of opposites at once
        ("How to speed up a video in iMovie", "How to slow down a video in iMovie", "opposites"),
        # one word the other negated by a prefix, listed or not
        ("How do I connect to a VPN on Windows?", "How do I disconnect from a VPN on Windows?", "opposites"),
        ("How do I activate a virtualenv?", "How do I deactivate a virtualenv?", "opposites"),
        ("Why is this feature relevant?", "Why is this feature irrelevant?", "opposites"),
        ("What to do when he yells in front of me?", "What to do when he yells infront of me?", None),  # a spelling
        # a yes/no question turned round: its answer opens with the verdict, which would read the wrong way round
        ("Is coffee good for your heart?", "Is coffee bad for your heart?", "opposites"),
        ("Is it legal to carry a knife in the UK?", "Is it illegal to carry a knife in the UK?", "opposites"),
        # session 19, from a probe of programming questions (0.70 for the first)
        (
            "How do I run a Docker container in the background?",
            "How do I run a Docker container in the foreground?",
            "opposites",
        ),
        ("How do I delete a local branch in git?", "How do I delete a remote branch in git?", "opposites"),
        ("Suggest a name for a black cat", "Suggest a name for a white cat", "opposites"),  # 0.46: a margin only
        ("Write a haiku about autumn", "Write a haiku about spring", "opposites"),  # seasons are siblings
        ("How hard is it to learn Python?", "How easy is it to learn Python?", None),  # how much of it: the same
        # more than the opposites differs: left to the networks
        ("What is the least painful way to quit?", "What is the most painless way to quit?", None),
        ("What are the best movies of 2014?", "Which films of 2014 were the worst?", None),
        # Prompts asking for differently shaped answers: served at confidence 0.99 in `make run` before the rule
        ("Explain quantum computing in simple terms", "Explain quantum computing in detail", "shape"),
        ("Explain TCP briefly", "Explain TCP step by step", "shape"),
        ("Write a poem about cats", "Write a haiku about cats", "shape"),
        ("Write a formal email to HR", "Write a formal letter to HR", "shape"),
        # an answer's length in other units (session 14); a line is a sentence
        ("Capital of Italy? Answer in one word.", "Capital of Italy? Answer in one sentence.", "shape"),
        ("Explain TCP in one sentence", "Explain TCP in a single line", None),
        # for another audience: served at 0.95 before the rule (session 14)
        ("Explain photosynthesis to a high school student", "Explain photosynthesis to a college student", "shape"),
        ("Write a story about a dragon for kids", "Write a story about a dragon for adults", "shape"),
        ("Explain recursion to beginners", "Explain recursion to an expert", "shape"),
        # the same audience written otherwise, or more closely on one side only
        ("Write a story about a dragon for kids", "Write a story about a dragon for children", None),
        ("Explain death to your child", "How would you explain death to a young child?", None),
        ("Explain recursion to a student", "Explain recursion", None),
        # the same shape asked for in other words
        ("Explain quantum computing in simple terms", "Explain quantum computing like I'm five", None),
        ("Explain black holes in layman's terms", "Explain black holes in simple words", None),
        # only one of them asks: left to the networks
        ("How does the stock market work?", "How does the stock market work, in layman's terms?", None),
        ("How can an email account get hacked?", "How do email accounts get hacked, in layman's terms?", None),
        # The same done to other data: served at 0.80 and 0.95 before the rule (session 13)
        (
            "Summarize: The meeting covered the budget, the hiring plan and the new office.",
            "Summarize: The meeting covered the budget, the layoffs and the office closure.",
            "data",
        ),
        ("What does this regex match: ^[a-z]+$", "What does this regex match: ^[A-Z]+$", "data"),  # cased data
        ("Translate 'thank you' into German", "Translate 'good night' into German", "data"),
        ("What does `git rebase -i` do?", "What does `git rebase --onto` do?", "data"),
        # a context handed over before the question (served at 0.92 before session 14)
        ("Context: The meeting is on Monday. Q: When?", "Context: The meeting is on Friday. Q: When?", "data"),
        # a phrase to say or translate, unquoted (served at 0.91 before session 14)
        ("How to say thank you in Spanish", "How to say you're welcome in Spanish", "data"),
        ("How do I say hello in Japanese?", "Translate goodbye into Japanese", "data"),
        # ...not a phrase referred to, or a language
        (
            "Can someone translate this picture from Arabic to English?",
            "Can anyone translate this picture to English?",
            None,
        ),
        ("How can you translate Chinese to English?", "How do I translate Chinese into English?", None),
        # the same data, asked for in other words, quoted otherwise, or cased otherwise (plain words)
        ("Summarize: The budget was approved.", "Give me a summary of this text: The budget was approved", None),
        ("Translate 'thank you' into German", 'Translate "thank you" to German', None),
        ("What does 'Carpe Diem' mean?", "What is the meaning of \u2018carpe diem\u2019?", None),
        # data on one side only, an apostrophe, a colon after no instruction: left to the networks
        ("Translate 'thank you' into German", "How do you say thank you in German?", None),
        ("What's the best way to learn Python?", "What is the best way to learn Python? I don't know", None),
        ("Python: how do I sort a list?", "Python: sorting a list", None),
    ],
)
def test_opposites_other_shapes_and_other_data_are_never_served(query: str, candidate: str, rule: str | None) -> None:
    assert veto(query, candidate) == rule
    assert veto(candidate, query) == rule


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.searches: list[int] = []

    async def search(self, scope, vector, k, *, asked=None):  # type: ignore[no-untyped-def]
        self.searches.append(k)
        return await super().search(scope, vector, k, asked=asked)


ELI5 = "explain quantum computing like i'm five"
DETAIL = "explain quantum computing in detail like a pro"  # the nearest to ELI5 (bag of words): 0.63, ruled out
SIMPLE = "explain quantum computing in simple terms"  # the next: 0.54, the same shape


async def test_when_every_candidate_is_ruled_out_the_next_nearest_gets_its_turn() -> None:
    store = CountingStore()
    svc = CacheService(embedder=BagOfWordsEmbedder(), store=store, llm=ScriptedLLM(),
                       policy=Policy(min_similarity=0.5, verifier=constant_verifier(10.0)))  # fmt: skip
    for q in (SIMPLE, DETAIL):
        await svc.answer(ask(q), CacheControl(mode=CacheMode.REFRESH), tenant="t")
    store.searches.clear()
    got = await svc.answer(ask(ELI5), tenant="t")
    assert (got.cache.tier, got.cache.matched_query) == ("semantic", SIMPLE)
    assert store.searches == [1, 4], "the policy's one candidate, then one search further"


async def test_a_candidate_judged_unlike_is_not_passed_over_for_a_farther_one() -> None:
    # Only a candidate known to be another question (a rule, a mismatch mark) makes way: one the networks judge
    # unlike is the nearest stored question all the same, and a farther one is rarely right (docs/quality.md).
    store = CountingStore()
    svc = CacheService(embedder=BagOfWordsEmbedder(), store=store, llm=ScriptedLLM(),
                       policy=Policy(min_similarity=0.5, verifier=falling_verifier()))  # fmt: skip
    near_q, far_q = "how do i bake a loaf of bread at home with butter", "how do i bake bread"
    for q in (near_q, far_q):
        await svc.answer(ask(q), CacheControl(mode=CacheMode.REFRESH), tenant="t")
    store.searches.clear()
    got = await svc.answer(ask("how do i bake a loaf of bread at home with butter please"), tenant="t")
    assert got.cache.status == "miss"
    assert store.searches == [1]


async def test_an_entry_marked_a_mismatch_makes_way_for_the_next_nearest() -> None:
    svc = CacheService(embedder=BagOfWordsEmbedder(), store=MemoryStore(), llm=ScriptedLLM(),
                       policy=Policy(min_similarity=0.5, verifier=constant_verifier(10.0)))  # fmt: skip
    near_q, far_q = "how do i bake a loaf of bread at home", "how do i bake bread at home"
    for q in (far_q, near_q):
        await svc.answer(ask(q), CacheControl(mode=CacheMode.REFRESH), tenant="t")
    asked_q = "how do i bake a loaf of bread at home quickly"
    first = await svc.answer(ask(asked_q), tenant="t")
    assert first.cache.matched_query == near_q
    assert first.cache.entry_id is not None
    await svc.feedback(first.cache.entry_id, "mismatch", tenant="t", query=asked_q)
    again = await svc.answer(ask(asked_q), tenant="t")
    assert (again.cache.tier, again.cache.matched_query) == ("semantic", far_q)


async def test_the_asked_texts_profile_is_worked_out_before_its_embedding() -> None:
    # After a model run the CPU's caches are cold and the same work takes several times as long (docs/performance.md)
    events: list[str] = []

    class Recording(BagOfWordsEmbedder):
        def embed(self, texts):  # type: ignore[no-untyped-def]
            events.append("embed")
            return super().embed(texts)

    class Preparing(Verifier):
        def prepare(self, query: str) -> None:
            events.append("prepare")
            super().prepare(query)

    base = constant_verifier(10.0)
    verifier = Preparing(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.init})
    svc = CacheService(embedder=Recording(), store=MemoryStore(), llm=ScriptedLLM(),
                       policy=Policy(min_similarity=0.5, verifier=verifier))  # fmt: skip
    await svc.answer(ask("how do i bake bread"), tenant="t")
    assert events == ["prepare", "embed"]
    events.clear()
    await svc.answer(ask("how do i bake bread"), tenant="t")
    assert events == [], "an exact hit does neither"


async def test_a_nearest_entry_naming_other_numbers_does_not_make_way() -> None:
    # On qqp/dev, what lay behind a nearest question ruled out by its numbers was the labelled duplicate 5 times in
    # 28 (docs/quality.md): the lookup ends there, as it does for a candidate the networks judge unlike.
    store = CountingStore()
    svc = CacheService(embedder=BagOfWordsEmbedder(), store=store, llm=ScriptedLLM(),
                       policy=Policy(min_similarity=0.3, verifier=constant_verifier(10.0)))  # fmt: skip
    for q in ("the 5 movies everyone should watch at some time", "what are the 10 best movies of all time"):
        await svc.answer(ask(q), CacheControl(mode=CacheMode.REFRESH), tenant="t")
    store.searches.clear()
    got = await svc.answer(ask("what are the 5 best movies of all time"), tenant="t")
    assert got.cache.status == "miss"
    assert store.searches == [1]


async def test_a_miss_says_why_the_nearest_stored_question_was_not_served() -> None:
    svc = service(Policy(min_similarity=0.5, verifier=constant_verifier(10.0)))
    stored = await svc.answer(ask("what are the positive effects of caffeine"), tenant="t")
    assert stored.cache.reason is None  # nothing was stored to be near it

    opposite = await svc.answer(ask("what are the negative effects of caffeine"), tenant="t")
    assert opposite.cache.status == "miss"
    assert opposite.cache.reason == (
        "nearest stored question ruled out (opposites): it asks the opposite, or a sibling"
        " (time / space, create / activate)"
    )

    far = await svc.answer(ask("how do volcanoes form"), tenant="t")
    assert str(far.cache.reason).startswith("nearest stored question too far (similarity ")
    assert str(far.cache.reason).endswith(" < 0.5)")


async def test_a_miss_says_when_the_networks_judged_the_nearest_another_question() -> None:
    svc = service(Policy(min_similarity=0.5, verifier=constant_verifier(-10.0)))
    await svc.answer(ask("how do i bake sourdough bread at home"), tenant="t")
    got = await svc.answer(ask("how do i bake sourdough bread at home quickly"), tenant="t")
    assert got.cache.status == "miss"
    assert got.cache.reason == "nearest stored question judged another question (confidence 0.000 < 0.5)"


async def test_a_miss_says_when_feedback_marked_the_nearest_wrong_for_this_question() -> None:
    svc = service(Policy(min_similarity=0.5, verifier=constant_verifier(10.0)))
    await svc.answer(ask("how do i bake sourdough bread at home"), tenant="t")
    asked = "how do i bake sourdough bread at home quickly"
    hit = await svc.answer(ask(asked), tenant="t")
    assert (hit.cache.status, hit.cache.tier) == ("hit", "semantic")
    assert hit.cache.entry_id is not None
    await svc.feedback(hit.cache.entry_id, "mismatch", tenant="t", query=asked)
    again = await svc.answer(ask(asked), tenant="t")
    assert again.cache.status == "miss"
    assert again.cache.reason == "nearest stored question marked wrong for this one (feedback)"


async def test_a_time_sensitive_question_says_only_an_exact_repeat_is_served() -> None:
    svc = service(Policy(min_similarity=0.5, verifier=constant_verifier(10.0), freshness=FreshnessPolicy(300)))
    await svc.answer(ask("what is the weather in paris today"), tenant="t")
    got = await svc.answer(ask("what is the weather like in paris today"), tenant="t")
    assert got.cache.status == "miss"
    assert got.cache.reason == "time-sensitive question: served only to an exact repeat"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.text(max_size=200))
def test_the_rules_judge_any_text_without_failing(a: str, b: str) -> None:
    # Any Unicode (other scripts, symbols, controls): a rule that raised would cost the request its cache lookup
    a, b = normalize_text(a), normalize_text(b)
    assert isinstance(looks_english(a), bool)
    assert isinstance(is_volatile(a), bool)
    assert isinstance(quotes_dates_or_prices(a), bool)
    assert veto(a, b) in (None, *RULES)
    assert veto(a, a) is None  # a text is never ruled out for itself
