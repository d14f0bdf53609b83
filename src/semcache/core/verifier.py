"""A second opinion on a semantic match: is the stored question really the same question as the new one?

Cosine similarity alone cannot tell "How do I reset my Gmail password?" from "How do I reset my Yahoo password?"
(0.68) any better than from a true paraphrase it scores lower. The verifier is a small ensemble of neural networks
(4 since session 6, their probabilities averaged), trained on Quora question pairs (`make train-verifier`), over
the two embeddings (their product and absolute difference, the usual sentence-pair features) and lexical signals
that embeddings blur: words present on one side only, numbers, negation, capitalised names, the question word.
It returns a probability that the two questions are duplicates; the service serves a candidate only if that
probability reaches the operating threshold chosen on held-out data. Inference is a few small matrix products in
numpy: well under a millisecond.

Rules overrule the networks where the embeddings cannot see the difference (veto()): different numbers, the same
words in swapped roles, opposites, differently shaped answers, other data handed over. docs/quality.md has them
with their measurements.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from semcache.core.fingerprint import SUPERSCRIPT_RUNS, SUPERSCRIPTS

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_CAPITALISED = re.compile(r"\b[A-Z][a-zA-Z0-9]+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_POWER_PLAIN = str.maketrans(SUPERSCRIPTS, "0123456789+-=()")
# Numbers written as words count as the digits would ("three reasons" is "3 reasons", "the second highest" is "the
# 2nd highest", "in his forties" names 40). Not "one" and "first", mostly not counts ("one of the best", "my first
# car"); "second" only as an ordinal (not "a second", "per second", "second-hand").
_NUMBER_WORDS = {
    word: str(n)
    for n, words in enumerate(
        """two second, three third, four fourth, five fifth, six sixth, seven seventh, eight eighth, nine ninth, ten
        tenth, eleven eleventh, twelve twelfth""".split(","),
        start=2,
    )
    for word in words.split()
} | {
    word: str(10 * n)
    for n, words in enumerate(
        """twenty twentieth twenties, thirty thirtieth thirties, forty fortieth forties, fifty fiftieth fifties,
        sixty sixtieth sixties, seventy seventieth seventies, eighty eightieth eighties, ninety ninetieth
        nineties""".split(","),
        start=2,
    )
    for word in words.split()
}
_NOT_ALWAYS_ORDINAL = frozenset({"second"})  # also a unit of time
_NOT_ORDINAL_BEFORE = frozenset({"a", "per", "one", "each", "every", "split", "1"})
_NEGATIONS = frozenset({"not", "no", "never", "without", "nothing", "none", "cannot", "nor", "neither"})
_STOP = frozenset(
    """a an the and or but if of to in on at by for with from as into about over after before between through
    during is are was were be been being am do does did done doing have has had having i me my we our you your
    he him his she her it its they them their this that these those there here what which who whom whose why how
    when where can could should would will shall may might must so than too very just also any some such own same
    other more most much many each every all both few s t get got""".split()
)
_QUESTION_WORDS = ("what", "why", "how", "when", "where", "who", "which", "is", "are", "can", "do", "does", "should")
# Words that give the words on either side of them roles: "convert a list to a string" is not "convert a string to a
# list", though it has the same words (and so nearly the same mean-pooled embedding and the same lexical features).
_DIRECTIONAL = frozenset({"to", "from", "than", "over", "before", "after", "per", "toward"})
_SAME_DIRECTION = {"into": "to", "onto": "to", "towards": "toward"}
# "to" after these is the infinitive's ("how to", "want to"), not a direction.
_INFINITIVE_BEFORE = frozenset(
    """how what where when whether which who want wants wanted need needs able going have has had try trying tried
    like way ways best better possible impossible easy easier hard harder difficult used ought supposed order due
    safe good bad necessary important okay ok legal illegal wise smart right wrong allowed""".split()
)
# A relation the same both ways round: "how far is the Sun from Earth" asks what "how far is Earth from the Sun" does
# (a directional word after any of these is not read as one).
_SYMMETRIC_BEFORE = frozenset(
    """far compare compared comparison different differ differs difference similar distance married related equal
    equivalent same close closer connect connects connected connecting link linked""".split()
)
_SIDE_WORDS = 2
_NEGATING_PREFIXES = frozenset({"un", "de", "dis", "in", "im", "il", "ir", "non", "anti"})
# Opposites: "the positive effects of caffeine" and "the negative effects of caffeine" ask for different lists; "the
# time complexity" and "the space complexity", "sort by key" and "sort by value", for different things. A yes/no
# question turned round ("Is coffee good for your heart?", "...bad for your heart?") is matched no more: Quora
# counts it one question, but an LLM's answer opens with its verdict ("No, ..."), which reads the wrong way round.
# Not listed: a word and the same word negated by a prefix ("lock" / "unlock") and two operations (_OPERATIONS), which
# _opposites() finds itself; "formal" / "informal" is, since "in" is also a word the prefix test must allow for.
_OPPOSITES = frozenset(
    frozenset(pair.split("/"))
    for pair in """good/bad best/worst better/worse pros/cons pro/con benefits/drawbacks upsides/downsides
    positive/negative increase/decrease easiest/hardest easy/hard easy/difficult strengths/weaknesses love/hate high/low
    highest/lowest least/most happy/sad right/wrong success/failure cheap/expensive biggest/smallest largest/smallest
    fastest/slowest strongest/weakest rich/poor ascending/descending formal/informal encode/decode encoding/decoding
    encrypt/decrypt encryption/decryption upload/download uploading/downloading enable/disable enabling/disabling
    enabled/disabled import/export importing/exporting push/pull buy/sell buying/selling gain/lose maximum/minimum
    max/min uppercase/lowercase add/remove adding/removing start/stop open/close show/hide in/out on/off soft/hard
    time/space key/value keys/values horizontal/vertical horizontally/vertically row/column rows/columns read/write
    reading/writing client/server frontend/backend input/output inputs/outputs sync/async synchronous/asynchronous
    public/private static/dynamic local/global absolute/relative width/height left/right up/down inner/outer
    internal/external inside/outside above/below send/receive sending/receiving sender/receiver request/response
    dark/light hot/cold warm/cold wet/dry long/short beginner/advanced beginners/advanced beginner/expert
    beginners/experts junior/senior male/female men/women man/woman boys/girls boy/girl husband/wife
    boyfriend/girlfriend mother/father mom/dad son/daughter brother/sister day/night summer/winter odd/even true/false
    first/last previous/next forward/backward forwards/backwards prefix/suffix mean/median lower/upper debit/credit
    acid/base acidic/basic inbound/outbound north/south east/west eat/avoid include/exclude bigger/smaller
    larger/smaller greater/smaller greater/less heavier/lighter faster/slower higher/lower raise/lower increase/lower
    increase/reduce top/bottom before/after older/younger oldest/youngest oldest/newest longer/shorter longest/shortest
    stronger/weaker richer/poorer richest/poorest hotter/colder warmer/colder hottest/coldest easier/harder
    thicker/thinner wider/narrower taller/shorter tallest/shortest deeper/shallower closer/farther early/late
    earlier/later earliest/latest over/under expand/collapse maximize/minimize speed/slow synonym/antonym
    synonyms/antonyms background/foreground local/remote black/white spring/summer spring/autumn spring/fall
    spring/winter summer/autumn summer/fall autumn/winter fall/winter""".split()
)
# Operations on a thing: two words of different groups are siblings as opposites are ("how to create a virtual
# environment" and "...activate a virtual environment"; "check if a string contains a substring" and "...starts
# with a substring"), words of one group are not ("delete" and "remove"). Words that also name another group's
# operation are left out ("start" a business is to create one, "start" a service to run it); so are nouns ("test").
_OPERATIONS = tuple(
    frozenset(group.split())
    for group in """create make build generate | delete remove erase destroy uninstall | activate | deactivate |
    install | update upgrade | downgrade | rename | copy duplicate clone | move | merge combine concatenate |
    split | sort | shuffle | reverse | contains includes | starts begins | ends | find search locate | replace
    substitute | convert | compare | reset | restore | backup | connect | disconnect | login | logout | compile |
    deploy | debug""".split("|")
)
_OPERATION = {word: i for i, group in enumerate(_OPERATIONS) for word in group}
# What a prompt asks of the answer's shape, beyond its subject: "explain quantum computing in simple terms" and
# "...in detail" want different answers (served at confidence 0.99 before this rule).
_COUNT = r"(?:one|a single|a few|two|three|four|five|\d+)"
_SHAPES = (
    ("detail", r"\bin (?:great |more |full |much )?detail\b|\bdetailed\b|\bin[- ]depth\b|\bthorough(?:ly)?\b"
     r"|\bcomprehensive(?:ly)?\b|\bstep[- ]by[- ]step\b"),
    ("brief", r"\bbrief(?:ly)?\b|\bconcise(?:ly)?\b|\bin a nutshell\b|\btl;?dr\b|\bshort answer\b"),
    # a length in a unit of its own: "in one word" is not "in one sentence" (the count is the numbers rule's)
    ("words", rf"\bin {_COUNT} words?\b"),
    ("sentences", rf"\bin {_COUNT} (?:sentences?|lines?)\b"),
    ("paragraphs", rf"\bin {_COUNT} paragraphs?\b"),
    ("simple", r"\bin simple (?:terms|words|language|english)\b|\bsimply put\b|\beli5\b|\blayman'?s? terms\b"
     r"|\blike (?:i'?m|i am) (?:five|5|a child|a kid|a beginner)\b"
     r"|\bto a (?:child|kid|five[- ]year[- ]old|5[- ]year[- ]old|layman)\b"),
)  # fmt: skip
_SHAPE = tuple((name, re.compile(pattern)) for name, pattern in _SHAPES)
# Only texts with one of these words can ask for a shape (the patterns are not run on the others).
_SHAPE_WORDS = frozenset(
    """detail detailed depth thorough thoroughly comprehensive comprehensively step brief briefly concise concisely
    nutshell tl tldr dr short sentence sentences line lines word words paragraph paragraphs simple simply eli5 layman
    layman's laymans like child kid layman""".split()
)
# Whom the answer is for: "explain photosynthesis to a high school student" and "...to a college student" want
# different answers (served at 0.95 before the rule); so do "...for beginners" and "...for experts".
_AUDIENCE_NOUNS = frozenset(
    """student students pupil pupils beginner beginners novice novices expert experts engineer engineers developer
    developers programmer programmers child children kid kids adult adults teen teens teenager teenagers senior
    seniors professional professionals scientist scientists physicist physicists mathematician mathematicians doctor
    doctors nurse nurses lawyer lawyers manager managers executive executives ceo investor investors grandma
    grandmother grandparents toddler toddlers audience""".split()
)
_AUDIENCE = re.compile(
    r"\b(?:explain|explaining|describe|teach|write|summari[sz]e|tell)\b.*?\b(?:to|for) "
    r"(?:an? |my |your |our |his |her |their |the |some |)"
    r"((?:[a-z0-9'-]+ ){0,2}?(?:" + "|".join(sorted(_AUDIENCE_NOUNS)) + r"))\b"
)
_AUDIENCE_SAME = {"kid": "child", "children": "child", "teenager": "teen", "novice": "beginner"}


def _audience(lowered: str) -> frozenset[tuple[str, frozenset[str]]]:
    """Whom an instruction asks the answer to be for, as (noun, its modifiers), one way of writing each noun ("kids"
    is "child"): "explain X to a high school student" is ("student", {"high", "school"})."""
    found = set()
    for m in _AUDIENCE.finditer(lowered):
        *modifiers, noun = m.group(1).split()
        if noun.endswith("s") and noun[:-1] in _AUDIENCE_NOUNS:
            noun = noun[:-1]
        found.add((_AUDIENCE_SAME.get(noun, noun), frozenset(modifiers)))
    return frozenset(found)


def _other_audience(q: TextProfile, c: TextProfile) -> bool:
    """True if both name whom the answer is for and none of the one's is the other's: another noun ("beginners",
    "experts"), or the same with other modifiers ("a high school student", "a college student"; not "a child", "a
    young child")."""
    return bool(q.audience and c.audience) and not any(
        n == m and (not a or not b or a == b) for n, a in q.audience for m, b in c.audience
    )


_FORMS = frozenset(
    "poem haiku limerick sonnet essay story song tweet email letter speech joke table json yaml csv".split()
)
# Data a prompt hands the model to work on: text in quotes or backticks, or what follows the colon of an
# instruction ("Summarize the following: ...", "What does this regex match: ^[a-z]+$"). Two prompts doing one thing
# to different data want different answers however alike they read (and the uncased embedder does not even tell
# "[a-z]" from "[A-Z]"), so the data are compared exactly, when both prompts carry some.
_QUOTED = re.compile(
    r"```(.+?)```|`([^`\n]+)`|\"([^\"\n]+)\"|\u201c([^\u201d\n]+)\u201d"  # code, "...", curly double quotes
    r"|(?<![\w'\u2019])['\u2018]([^'\u2019\n]+?)['\u2019](?![\w'\u2019])",  # '...' (not an apostrophe: "don't")
    re.S,
)
_DATA_CUES = frozenset(
    """this these following below text summarize summarise summary translate translation rewrite paraphrase rephrase
    correct proofread fix classify categorize categorise extract analyze analyse refactor format simplify shorten
    sentiment debug context document passage article excerpt transcript snippet input profile message
    email""".split()
)
# A phrase to translate need not be quoted: "How do I say thank you in Spanish?" hands over "thank you".
_PHRASE = re.compile(r"\b(?i:say|translate)\s+(.+?)\s+(?:in|into|to)\s+[A-Z][a-z]+\b")
_PHRASE_CUES = frozenset({"say", "translate"})
_NOT_A_PHRASE = frozenset("this these that those the a an my your his her our their it them some any".split())
_DATA_MARKS = frozenset("`\"'\u2018\u2019\u201c:")  # only a text with one of these can hand over data
_PLAIN = re.compile(r"[\w\s.,!?'\u2019-]*")
_CUE_WORDS = 12  # the most words before a colon that can name what is done with the data after it
_COLON = re.compile(r":\s+(?=\S)")

LEXICAL_FEATURES = 14


def _data(text: str, words: frozenset[str]) -> frozenset[str]:
    """The data the text hands over (see _QUOTED): quoted spans, or a phrase to say or translate "in <Language>", or
    what follows "<an instruction naming it>: "."""
    found = [next(g for g in m.groups() if g is not None) for m in _QUOTED.finditer(text)]
    if not found and not _PHRASE_CUES.isdisjoint(words):
        found = [m.group(1) for m in _PHRASE.finditer(text) if _a_phrase(m.group(1))]
    colon = None if found else _COLON.search(text)  # (quoted spans after the colon are the data themselves)
    if colon is not None:
        cue = _WORD.findall(text[: colon.start()].lower())
        if len(cue) <= _CUE_WORDS and not _DATA_CUES.isdisjoint(cue):
            found.append(text[colon.end() :])
    return frozenset(d for d in map(_as_data, found) if d)


def _a_phrase(span: str) -> bool:
    """Whether what is to be said or translated is a phrase given, not one referred to ("this picture", "these
    Spanish phrases") or a language ("translate Chinese to English")."""
    first = span.split(maxsplit=1)[0].lower()
    return first not in _NOT_A_PHRASE and not (span[:1].isupper() and " " not in span)


def _as_data(span: str) -> str:
    """Plain words compare without their case and closing stop ("Think and Grow Rich" is "think and grow rich");
    anything with other signs (code, a pattern) compares exactly: "^[a-z]+$" is not "^[A-Z]+$"."""
    span = span.strip()
    return span.lower().rstrip(".!?, ") if _PLAIN.fullmatch(span) else span


_OPERATOR_CHARS = frozenset("+-*/=<>^%!&|~#$€£¥₹\u00d7÷\u2212±≠≈≤≥√∑∫∞∂")  # with the times and minus signs
_OPERATOR_RUN = re.compile("[" + re.escape("".join(sorted(_OPERATOR_CHARS))) + "]+")


def _operators(text: str) -> frozenset[str]:
    """The runs of operator characters that sit in a formula or code: next to a number ("5 + 3", "x^2",
    "$100", "15%"), next to a one-letter name ("C++", "C#", "n+1", "++i"), or alone between spaces ("a * b").
    Not those between longer words, which are prose ("and/or", "e-mail", "boyfriend/girlfriend"), nor an
    exclamation mark after one."""
    runs = []
    for m in _OPERATOR_RUN.finditer(text):
        before, after = text[m.start() - 1 : m.start()], text[m.end() : m.end() + 1]
        if (
            before.isdigit()
            or after.isdigit()
            or ((not before or before.isspace()) and (not after or after.isspace()))
            or (before.isalpha() and not text[m.start() - 2 : m.start() - 1].isalnum())
            or (after.isalpha() and not text[m.end() + 1 : m.end() + 2].isalnum())
        ):
            runs.append(m.group())
    return frozenset(runs)


def _worded(digits: frozenset[str], tokens: list[str]) -> frozenset[str]:
    """digits and the numbers the words name, in digits (see _NUMBER_WORDS)."""
    if _NUMBER_WORDS.keys().isdisjoint(tokens):
        return digits
    found = set(digits)
    for i, token in enumerate(tokens):
        n = _NUMBER_WORDS.get(token)
        if n is not None and (token not in _NOT_ALWAYS_ORDINAL or _ordinal_second(tokens, i)):
            found.add(n)
    return frozenset(found)


def _counted_nouns(digits: frozenset[str], tokens: list[str]) -> frozenset[str]:
    """The plural nouns right after a count of two or more (2 to 999 in digits, or in words; not a year), singular
    (see _singular). digits: the text's numbers (none, and no number word: nothing counted)."""
    if not digits and _NUMBER_WORDS.keys().isdisjoint(tokens):
        return frozenset()
    return frozenset(
        _singular(noun)
        for number, noun in itertools.pairwise(tokens)
        if ((number.isdigit() and 2 <= int(number) < 1000) or number in _NUMBER_WORDS)
        and len(noun) > 3
        and noun.endswith("s")
        and noun not in _STOP
    )


def _powers(text: str) -> frozenset[str]:
    """The superscripts (exponents, charges) as numbers of their own for the numbers rule: "10²" names 10 and ^2, so
    it is not "10³" (^3) nor "102"; "Na⁺" is not "Na⁻". (The networks' features see digits only, as trained.)"""
    if text.isascii():
        return frozenset()
    return frozenset("^" + run.translate(_POWER_PLAIN) for run in SUPERSCRIPT_RUNS.findall(text))


def _ordinal_second(tokens: list[str], i: int) -> bool:
    """Whether "second" at tokens[i] is the ordinal: not "a second", "per second", "second-hand"."""
    after_article = i > 0 and tokens[i - 1] in _NOT_ORDINAL_BEFORE
    return not after_article and (i + 1 == len(tokens) or tokens[i + 1] != "hand")


def _negated(tokens: list[str]) -> bool:
    return any(t in _NEGATIONS or t.endswith("n't") for t in tokens)


def _question_word(tokens: list[str]) -> str | None:
    return next((t for t in tokens[:3] if t in _QUESTION_WORDS), None)


Roles = tuple[tuple[str, str, frozenset[str], frozenset[str]], ...]


def _roles(tokens: list[str]) -> Roles:
    """(word, the word before it, the content words nearest before it, those nearest after it) for each directional
    word the text uses once (so the two sides are unambiguous), or "to" after a "from". A word found on both sides
    tells nothing and is left out; so is a relation that reads the same both ways round."""
    # "How many cups are in a liter?" is not "How many liters are in a cup?": in a count, "in" gives roles too
    directional = _DIRECTIONAL | {"in"} if tokens[:2] in (["how", "many"], ["how", "much"]) else _DIRECTIONAL
    if directional.isdisjoint(tokens) and _SAME_DIRECTION.keys().isdisjoint(tokens):
        return ()
    tokens = [_SAME_DIRECTION.get(t, t) for t in tokens]
    at: dict[str, list[int]] = {}
    for i, t in enumerate(tokens):
        if t in directional and not (t == "to" and i > 0 and tokens[i - 1] in _INFINITIVE_BEFORE):
            at.setdefault(t, []).append(i)
    if len(at.get("to", ())) > 1 and len(at.get("from", ())) == 1:
        # "how long does it take to fly from London to Paris": the "to" of "from ... to" is the direction
        after_from = [i for i in at["to"] if i > at["from"][0]]
        at["to"] = after_from[:1]
    roles = []
    for word, places in sorted(at.items()):
        if len(places) != 1:
            continue
        i = places[0]
        if not _SYMMETRIC_BEFORE.isdisjoint(tokens[:i]):
            continue
        previous = tokens[i - 1] if i > 0 else ""
        before = [t for t in tokens[:i] if t not in _STOP]
        after = [t for t in tokens[i + 1 :] if t not in _STOP]
        if word == "in":  # a count's units: "cups" in one question is "cup" in the other
            before, after = [_singular(t) for t in before], [_singular(t) for t in after]
        both = set(before) & set(after)
        before = [t for t in before if t not in both][-_SIDE_WORDS:]
        after = [t for t in after if t not in both][:_SIDE_WORDS]
        if before and after:
            roles.append((word, previous, frozenset(before), frozenset(after)))
    return tuple(roles)


def _singular(word: str) -> str:
    """A plural's "s" off, crudely ("cups" and "cup", "liters" and "liter" play the same role)."""
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _traded(q: TextProfile, c: TextProfile) -> Iterator[tuple[str, str, str]]:
    """For each directional word both texts use whose two sides trade places between them: the word, and the word
    before it in each text ("greater" in "greater than")."""
    for word, previous, before, after in q.roles:
        for word2, previous2, before2, after2 in c.roles:
            if word == word2 and before & after2 and after & before2:
                yield word, previous, previous2


def _swapped(q: TextProfile, c: TextProfile) -> bool:
    """True if two words trade places across a directional word: "from .NET to Java" and "from Java to .NET",
    "is Messi better than Ronaldo" and "is Ronaldo better than Messi". "than" counts only after the same word:
    "greater than" and "smaller than" with the sides swapped say the same thing."""
    return any(word != "than" or previous == previous2 for word, previous, previous2 in _traded(q, c))


@dataclass(frozen=True, slots=True)
class TextProfile:
    """What the lexical features need from one text, computed once per text (not once per pair)."""

    length: int
    """Number of word tokens."""
    last: str | None
    words: frozenset[str]
    content: frozenset[str]
    numbers: frozenset[str]
    """The numbers written in digits (what the networks were trained on)."""
    counted: frozenset[str]
    """numbers, and those written as words ("three", "second"), in digits: what the numbers rule compares."""
    counted_nouns: frozenset[str]
    """What a count of two or more counts, singular: "commit" in "the last two commits", "row" in "5 rows"."""
    names: frozenset[str]
    negated: bool
    question_word: str | None
    after_how: frozenset[str]
    """Words right after "how" ("how hard", "how safe")."""
    roles: Roles
    """Each directional word's sides (see _roles)."""
    shapes: frozenset[str]
    """What the text asks of the answer's length or level: detail, brief, simple (see _SHAPES)."""
    forms: frozenset[str]
    """Written forms it names: poem, essay, email, table..."""
    audience: frozenset[tuple[str, frozenset[str]]]
    """Whom it asks the answer to be for: "a high school student", "beginners" (see _AUDIENCE)."""
    data: frozenset[str]
    """The data it hands over to be worked on, exactly as written (see _data)."""
    operators: frozenset[str]
    """Its operators and symbols in a formula or code (see _operators)."""


def _profile(text: str) -> TextProfile:
    lowered = text.lower()
    tokens = _WORD.findall(lowered)
    words = frozenset(tokens)
    digits = frozenset(_NUMBER.findall(text))
    return TextProfile(
        length=len(tokens),
        last=tokens[-1] if tokens else None,
        words=words,
        content=words - _STOP,
        numbers=digits,
        counted=_worded(digits, tokens) | _powers(text),
        counted_nouns=_counted_nouns(digits, tokens),
        names=frozenset(w.lower() for w in _CAPITALISED.findall(text[1:])),
        negated=_negated(tokens),
        question_word=_question_word(tokens),
        after_how=frozenset(b for a, b in itertools.pairwise(tokens) if a == "how"),
        roles=_roles(tokens),
        shapes=frozenset()
        if words.isdisjoint(_SHAPE_WORDS)
        else frozenset(name for name, pattern in _SHAPE if pattern.search(lowered)),
        forms=frozenset(
            w if w in _FORMS else w[:-1] for w in words if w in _FORMS or (w[-1] == "s" and w[:-1] in _FORMS)
        ),
        audience=frozenset() if words.isdisjoint(_AUDIENCE_NOUNS) else _audience(lowered),
        data=_data(text, words)
        if _DATA_MARKS.intersection(text) or not _PHRASE_CUES.isdisjoint(words)
        else frozenset(),
        operators=_operators(text) if _OPERATOR_CHARS.intersection(text) else frozenset(),
    )


_cached_profile = functools.lru_cache(maxsize=2048)(_profile)
PROFILE_CACHE_MAX_CHARS = 2000
"""Profiles of texts up to this long are kept (stored questions come up again and again); longer ones are not."""


def profile(text: str) -> TextProfile:
    """The text's profile; remembered for the most recent short texts."""
    return _cached_profile(text) if len(text) <= PROFILE_CACHE_MAX_CHARS else _profile(text)


def _lexical(q: TextProfile, c: TextProfile) -> npt.NDArray[np.float32]:
    union, content_union = q.words | c.words, q.content | c.content
    return np.array(
        [
            len(q.words & c.words) / len(union) if union else 1.0,
            len(q.content & c.content) / len(content_union) if content_union else 1.0,
            len(q.content - c.content) / max(1, len(q.content)),
            len(c.content - q.content) / max(1, len(c.content)),
            min(len(q.content - c.content), 8) / 8,
            min(len(c.content - q.content), 8) / 8,
            float(q.numbers != c.numbers),
            float(bool(q.numbers) or bool(c.numbers)),
            float(q.negated != c.negated),
            float(q.question_word == c.question_word),
            min(len(q.names ^ c.names), 5) / 5,
            min(q.length, c.length) / max(1, q.length, c.length),
            min(abs(q.length - c.length), 20) / 20,
            float(q.last == c.last),
        ],
        dtype=np.float32,
    )


def lexical_features(query: str, candidate: str) -> npt.NDArray[np.float32]:
    """Signals embeddings blur, for one pair of texts."""
    return _lexical(profile(query), profile(candidate))


def _opposed(q: TextProfile, c: TextProfile) -> bool:
    """True if the only content words that differ are a pair of opposites ("best" and "worst"; or two pairs: "speed
    up" and "slow down"), unless both ask how much of it ("how hard is it to learn Python?", "how easy..."): one
    answer settles both."""
    differ = q.words ^ c.words
    if not 2 <= len(differ) <= 4 or _comparison_turned_round(q, c):  # the pair, perhaps stop words ("of" / "for")
        return False
    words = q.words | c.words
    pairs = [
        pair
        for pair in map(frozenset, itertools.combinations(differ, 2))
        if _opposites(pair, words)
        and not pair <= q.words
        and not pair <= c.words
        and not pair <= q.after_how | c.after_how
    ]  # one pair, or two ("speed up" / "slow down")
    return bool(pairs) and (q.content ^ c.content) <= frozenset().union(*pairs)


def _comparison_turned_round(q: TextProfile, c: TextProfile) -> bool:
    """True if the two sides of a "than" trade places: "Is Go faster than Rust?" and "Is Rust slower than Go?" ask
    the same thing, their opposites notwithstanding."""
    return any(word == "than" for word, _, _ in _traded(q, c))


def _opposites(pair: frozenset[str], words: frozenset[str]) -> bool:
    """Whether the two words are opposites or siblings: listed (_OPPOSITES), two operations of different groups
    (_OPERATIONS: "create" and "activate"), or one is the other negated by a prefix ("install", "uninstall";
    "activate", "deactivate"; "relevant", "irrelevant"), a prefix that is not a word of the texts (words) as well:
    "infront" is "in front"."""
    if pair in _OPPOSITES:
        return True
    short, long = sorted(pair, key=len)
    groups = _OPERATION.get(short), _OPERATION.get(long)
    if None not in groups and groups[0] != groups[1]:
        return True
    prefix = long[: -len(short)]
    return len(short) > 2 and long.endswith(short) and prefix in _NEGATING_PREFIXES and prefix not in words


def _reshaped(q: TextProfile, c: TextProfile) -> bool:
    """True if both texts ask for an answer's shape (or name a written form, or whom it is for) and not the same one:
    "in simple terms" and "in detail", "a poem" and "a haiku", "to a high school student" and "to a college student".
    Only one of them asking is left to the networks ("How does the stock market work?" and "...in layman's terms?"
    are one question on Quora)."""
    return (
        bool(q.shapes and c.shapes and q.shapes != c.shapes)
        or bool(q.forms and c.forms and q.forms != c.forms)
        or _other_audience(q, c)
    )


def _operators_differ(q: TextProfile, c: TextProfile) -> bool:
    """True if both texts hold operators or symbols of a formula or code, and not the same ones:
    "Solve x^2 + 5x + 6 = 0" and "Solve x^2 - 5x + 6 = 0" (served at 0.91 before the rule: the networks' words
    hold no symbols), "What is 2+2?" and "What is 2*2?", "C++" and "C#", "$100" and "€100". One side only
    ("15%", "15 percent") is left to the networks."""
    return q.operators != c.operators and bool(q.operators) and bool(c.operators)


def _numbers_differ(q: TextProfile, c: TextProfile) -> bool:
    """True if both texts name numbers and not the same ones: "top 5" and "top 10", "the second highest" and "the
    third highest", "3 reasons" and "5 reasons" ("3" and "three" are the same). A number on one side only ("How do I
    lose 10 pounds?", "How do I lose weight?") is left to the networks, which weigh it (a number on one side is one
    of their features): of those the one-sided veto took on qqp/dev they serve 59, 57 of them labelled duplicates
    (docs/quality.md)."""
    if q.counted and c.counted:
        return q.counted != c.counted
    # One side counts what the other names once: "How do I undo the last two commits?" / "...the last commit?"
    return bool(q.counted_nouns & c.words) or bool(c.counted_nouns & q.words)


def _other_data(q: TextProfile, c: TextProfile) -> bool:
    """True if each text hands over data (quoted, or after an instruction's colon) that the other does not:
    "Summarize: <one text>" and "Summarize: <another>". One of them quoting less (or nothing: "Translate 'thank you'
    into German", "How do you say thank you in German?") is left to the networks."""
    return bool(q.data - c.data) and bool(c.data - q.data)


_RULES = (  # name, test, and what it says of a stored question it rules out
    ("numbers", _numbers_differ, "it names other numbers"),
    ("operators", _operators_differ, "its formula or code has other operators"),
    ("roles", _swapped, "its words play other roles"),
    ("opposites", _opposed, "it asks the opposite, or a sibling (time / space, create / activate)"),
    ("shape", _reshaped, "it asks for another kind of answer"),
    ("data", _other_data, "it hands over other data"),
)
RULES = tuple(name for name, _, _ in _RULES)
"""The names veto() gives its rules, in the order it tries them."""
RULE_SAYS = {name: says for name, _, says in _RULES}
"""What each rule says of a stored question it rules out, in words for a response's cache.reason."""


def _veto(q: TextProfile, c: TextProfile) -> str | None:
    return next((name for name, rules_out, _ in _RULES if rules_out(q, c)), None)


def veto(query: str, candidate: str) -> str | None:
    """Why the pair is never served, whatever the network says, or None: the two texts name different numbers
    ("numbers": "top 5" and "top 10" are different questions), give the same words swapped roles ("roles": "convert a
    list to a string" and "convert a string to a list"), differ only by a pair of opposites or of siblings
    ("opposites": "the positive effects of caffeine", "the negative effects"; "time complexity", "space
    complexity"; "create a virtual environment", "activate a virtual environment"), ask for differently shaped
    answers ("shape": "in simple terms", "in detail"; "a poem", "a haiku"), or each hand over data the other lacks
    ("data": "Summarize: <one text>", "Summarize: <another>"). Embeddings barely see any of these."""
    return _veto(profile(query), profile(candidate))


def vetoed(query: str, candidate: str) -> bool:
    """True if veto() rules the pair out."""
    return veto(query, candidate) is not None


def _sigmoid(x: float) -> float:
    """1 / (1 + e^-x), x clipped to [-40, 40] as probability() clips it."""
    return 1.0 / (1.0 + math.exp(-min(40.0, max(-40.0, x))))


def feature_matrix(
    u: npt.NDArray[np.float32], v: npt.NDArray[np.float32], lexical: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """The verifier's input, a row per pair: cosine, u*v, |u-v|, then the pair's lexical features.

    u is one query vector (dim,) shared by every row, or one per row (n, dim); v holds the n other vectors and
    lexical the n rows of lexical_features. The service, the training and the evaluation all build rows here.
    """
    rows, dim = v.shape
    # Written in place into one array: after a model run every numpy call is slow (cold caches), so the fewer the
    # better on the hit path (docs/performance.md).
    out = np.empty((rows, 1 + 2 * dim + lexical.shape[1]), dtype=np.float32)
    product = np.multiply(u, v, out=out[:, 1 : dim + 1])
    np.sum(product, axis=1, out=out[:, 0])
    difference = np.subtract(u, v, out=out[:, dim + 1 : 2 * dim + 1])
    np.abs(difference, out=difference)
    out[:, 2 * dim + 1 :] = lexical
    return out


@dataclass(frozen=True)
class Verifier:
    """An ensemble of one-hidden-layer networks over pair features (their probabilities averaged), with the
    threshold it ships with. M networks of H hidden units each: w1 (features, M*H), b1 (M*H,), w2 (M, H), b2 (M,);
    a single network may also be given as w2 (H,) and a scalar b2."""

    version: str
    mean: npt.NDArray[np.float32]
    scale: npt.NDArray[np.float32]
    w1: npt.NDArray[np.float32]
    b1: npt.NDArray[np.float32]
    w2: npt.NDArray[np.float32]
    b2: npt.NDArray[np.float32] | float
    threshold: float
    min_cosine: float
    """Candidates below this cosine are not even scored (the training data had almost no duplicates there)."""
    _w1: npt.NDArray[np.float32] = field(init=False, repr=False, compare=False)
    _b1: npt.NDArray[np.float32] = field(init=False, repr=False, compare=False)
    _out: npt.NDArray[np.float32] = field(init=False, repr=False, compare=False)
    _b2: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        w2 = np.atleast_2d(np.asarray(self.w2, dtype=np.float32))
        b2 = np.atleast_1d(np.asarray(self.b2, dtype=np.float32))
        if w2.shape[0] != b2.shape[0] or self.w1.shape[1] != w2.size or self.b1.shape != (w2.size,):
            raise ValueError(f"inconsistent verifier shapes: w1 {self.w1.shape}, b1 {self.b1.shape}, w2 {w2.shape}")
        object.__setattr__(self, "w2", w2)
        object.__setattr__(self, "b2", b2)
        # What probability() multiplies by, worked out once: the standardisation folded into the first layer
        # ((f - mean) / scale @ w1 = f @ (w1 / scale) - (mean / scale) @ w1), and the members' output weights as
        # one block-diagonal matrix, so that each layer is a single matrix product.
        members, hidden = w2.shape
        w1 = np.asarray(self.w1, dtype=np.float32)
        scale = np.asarray(self.scale, dtype=np.float32)
        out = np.zeros((members * hidden, members), dtype=np.float32)
        for m in range(members):
            out[m * hidden : (m + 1) * hidden, m] = w2[m]
        object.__setattr__(self, "_w1", np.ascontiguousarray(w1 / scale[:, None]))
        object.__setattr__(self, "_b1", (self.b1 - (self.mean / scale) @ w1).astype(np.float32))
        object.__setattr__(self, "_out", out)
        object.__setattr__(self, "_b2", tuple(float(x) for x in b2))

    @property
    def members(self) -> int:
        """How many networks are averaged."""
        return int(np.shape(self.w2)[0])

    def probability(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """P(duplicate) for rows of pair features: the mean of the members' probabilities."""
        p = self._logits(features)  # (rows, members): the logits, then their probabilities
        p += self.b2
        np.clip(p, -40.0, 40.0, out=p)
        np.negative(p, out=p)
        np.exp(p, out=p)
        p += 1.0
        np.reciprocal(p, out=p)
        return np.asarray(p.mean(axis=1), dtype=np.float32)

    def _logits(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Each member's logit without its output bias, a row per pair."""
        hidden = np.atleast_2d(features) @ self._w1  # every member's hidden layer (in place from here on)
        hidden += self._b1
        np.maximum(hidden, 0.0, out=hidden)
        return np.asarray(hidden @ self._out)

    def _probability_of_one(self, features: npt.NDArray[np.float32]) -> float:
        """probability() of a single pair, its last steps on a few Python floats. Right after a model run every
        numpy call costs 10-15 us on cold caches: the ten after the first matrix product took 113 us against its 160
        (hand check, docs/performance.md), and seven of them only turn 4 logits into their mean probability. In
        float64: within 1e-6 of probability()'s float32."""
        logits = self._logits(features)[0].tolist()
        return sum(_sigmoid(x + b) for x, b in zip(logits, self._b2, strict=True)) / len(logits)

    def prepare(self, query: str) -> None:
        """Work out what scoring query will need from its text, ahead of the scoring (kept with the recent texts'
        profiles). The service calls it before the query's embedding: done after a model run, which leaves the
        CPU's caches cold, the same work takes several times as long. (A text too long to keep is left.)"""
        if len(query) <= PROFILE_CACHE_MAX_CHARS:
            profile(query)

    def score(self, query: str, candidate: str, u: npt.NDArray[np.float32], v: npt.NDArray[np.float32]) -> float:
        """P(duplicate) for one pair; 0 when the pair is vetoed (see vetoed())."""
        return self.score_many(query, [candidate], u, [v])[0]

    def score_many(
        self,
        query: str,
        candidates: list[str],
        u: npt.NDArray[np.float32],
        vs: list[npt.NDArray[np.float32]],
    ) -> list[float]:
        """score() for several candidates of one query, in one pass through the network."""
        q, profiles = profile(query), [profile(c) for c in candidates]  # once for all the candidates
        scores = self._networks(q, profiles, u, vs)
        return [0.0 if _veto(q, c) else x for c, x in zip(profiles, scores, strict=True)]

    def networks(
        self,
        query: str,
        candidates: list[str],
        u: npt.NDArray[np.float32],
        vs: list[npt.NDArray[np.float32]],
    ) -> list[float]:
        """The networks' P(duplicate) for several candidates of one query, in one pass, without the rules: for a
        caller that has applied veto() already (the service, which needs to know which rule ruled a candidate out)."""
        return self._networks(profile(query), [profile(c) for c in candidates], u, vs)

    def _networks(
        self, q: TextProfile, profiles: list[TextProfile], u: npt.NDArray[np.float32], vs: list[npt.NDArray[np.float32]]
    ) -> list[float]:
        if not profiles:
            return []
        if len(profiles) == 1:  # the hit path's one candidate: views where stacking would copy, no numpy tail
            return [self._probability_of_one(feature_matrix(u, vs[0][None], _lexical(q, profiles[0])[None]))]
        lexical = np.stack([_lexical(q, c) for c in profiles])
        return [float(x) for x in self.probability(feature_matrix(u, np.stack(vs), lexical))]

    def save(self, path: Path) -> None:
        """Write the weights and settings as one small .npz."""
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            version=np.array(self.version),
            mean=self.mean,
            scale=self.scale,
            w1=self.w1.astype(np.float16),
            b1=self.b1,
            w2=self.w2,
            b2=np.array(self.b2),
            threshold=np.array(self.threshold),
            min_cosine=np.array(self.min_cosine),
        )
        path.write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> Verifier:
        """Read weights written by save()."""
        with np.load(path) as z:
            return cls(
                version=str(z["version"]),
                mean=z["mean"].astype(np.float32),
                scale=z["scale"].astype(np.float32),
                w1=z["w1"].astype(np.float32),
                b1=z["b1"].astype(np.float32),
                w2=z["w2"].astype(np.float32),
                b2=z["b2"].astype(np.float32),
                threshold=float(z["threshold"]),
                min_cosine=float(z["min_cosine"]),
            )


DEFAULT_PATH = Path(__file__).with_name("verifier.npz")
