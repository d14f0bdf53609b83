"""Whether a question is in English: the language the semantic tier's matcher was trained and measured in.

The verifier's networks learned Quora's English questions, and its rules (roles, opposites, shapes, data) know
English words. In other languages they let through what they catch in English: "convertir una lista en una cadena"
was served the answer to "una cadena en una lista" (0.93), "los efectos positivos del café" that of "negativos"
(0.91), "subir un archivo" that of "descargar" (0.84) (session 19, `semcache explain`). So by default a question
in another language is served only to an exact repeat (Policy.any_language opts out).

The test is a count of function words, which every sentence of a language uses and few of another's: a question is
taken for another language's when more of its words are that language's function words than English ones, and at
least two are. Questions with no function words ("python list comprehension") count as English. Text mostly in
another script (Cyrillic, Greek, Arabic, Chinese...) is not English either; with Policy.any_language such text is
still guarded by what the embedder cannot read (Embedder.unread). Of the 137,543 distinct texts of qqp's three splits
it takes three for another language: one English ("...GDP per capita growth...": "per" is Italian) and two mostly in
Arabic or Devanagari; of GPTCache's 1,952 distinct texts none (`make eval`, "language" in eval.json).
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")

_ENGLISH = frozenset(
    """the is are was were be been what how why when where which who whom whose do does did i you he she it we they
    me my your our their this that these those to of in on at for with from by about into than and or but not no
    can could should would will shall may might must have has had get use make there an as if so any some all more
    most best way""".split()
)

# Not single letters, which are variables as often ("If 3x + 9y = 7x + y"), nor "com" (Portuguese "with", and
# every ".com").
_OTHERS = {
    language: frozenset(w for w in words.split() if len(w) > 1 and w != "com") - _ENGLISH
    for language, words in {
        "es": """el la los las del al que y en un una unos unas es son por para con cómo qué cuál cuáles cuándo dónde
            quién se mi mis su sus puedo hay más lo le les pero porque muy está están este esta esto""",
        "fr": """le la les des du de et est sont un une que qui pour dans avec comment quel quelle quels quelles
            pourquoi ce cette ces je il elle nous vous sur pas ne au aux en mon ma mes son sa ses peut faire être""",
        "de": """der die das und ist sind ein eine einen wie was warum wer wo ich mit für von zu den dem des nicht
            auf es sie kann im mein meine man auch oder aber""",
        "pt": """o os as um uma é são do da dos das em no na para com não como qual quais por que se meu minha seu
            sua posso há mais isso este esta""",
        "it": """il lo gli le di che è sono un una per con come perché qual quale quali del della dei delle non mio
            mia si può nel nella""",
        "nl": """de het een en is zijn van hoe wat waarom wie ik niet met voor op dat die deze mijn kan er""",
    }.items()
}


_LANGUAGES: dict[str, tuple[int, ...]] = {
    word: tuple(i for i, vocabulary in enumerate((_ENGLISH, *_OTHERS.values())) if word in vocabulary)
    for word in _ENGLISH.union(*_OTHERS.values())
}
"""Each function word, with the languages it belongs to (0 is English)."""


_LATIN_END = 0x24F
"""The last code point of the Latin scripts (Basic Latin to Latin Extended-B)."""


# Quoted text is the data of the question, not its language: "Translate 'la casa es grande' into English".
_QUOTED = re.compile(r""""[^"]*"|“[^”]*”|‘[^’]*’|`[^`]*`|(?<!\w)'[^']*'(?!\w)""")


def looks_english(text: str) -> bool:
    """False if most of text's letters are of another script than Latin (Cyrillic, Greek, Chinese...), or if more
    of its words outside quotes are function words of Spanish, French, German, Portuguese, Italian or Dutch than
    English ones (and at least two are); True otherwise, text without function words included."""
    if not text.isascii():
        letters = [c for c in text if c.isalpha()]
        if sum(ord(c) > _LATIN_END for c in letters) * 2 > len(letters):
            return False
    counts = [0] * (1 + len(_OTHERS))
    if any(q in text for q in "\"'“‘`"):
        text = _QUOTED.sub(" ", text)
    for word in _WORD.findall(text.lower()):
        for i in _LANGUAGES.get(word, ()):
            counts[i] += 1
    other = max(counts[1:])
    return not (other > counts[0] and other >= 2)
