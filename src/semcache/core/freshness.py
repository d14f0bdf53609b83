"""Freshness: questions whose answer changes with time, and answers that quote dates or prices.

A time-sensitive question ("weather today", "current price of bitcoin", "who won last night", "latest iPhone")
is either not cached or cached briefly, and is never answered from the semantic tier: a paraphrase may have been
stored on another day. An answer that quotes dates, prices or percentages is kept for a shorter time than an
evergreen one. The rules are regular expressions, listed here so they can be read and argued with; the TTLs are
settings (SEMCACHE_VOLATILE_TTL_SECONDS, SEMCACHE_DATED_ANSWER_TTL_SECONDS).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Freshness = Literal["volatile", "dated", "evergreen"]

_OFFICE = r"(president|prime\s+minister|ceo|chancellor|king|queen|pope|leader|champion|mayor|governor|coach|owner)"
_VOLATILE_QUESTION = re.compile(
    rf"""\b(
        today|today's|tonight|tomorrow|yesterday|this\s+(morning|afternoon|evening|week|weekend|month|year|season)
        |right\s+now|as\s+of\s+(now|today)|open\s+now|now\s+open|at\s+the\s+moment|these\s+days|nowadays
        |so\s+far\s+this|to\s+date|up\s+to\s+date|currently
        |current\s+(\w+\s+){{0,3}}(price|prices|rate|rates|status|time|weather|events?|news|value|version|population
            |record|holder|situation|standings|score|temperature|{_OFFICE})
        |(reigning|incumbent)\s+\w+|still\s+(the\s+|a\s+)?(\w+\s+)?({_OFFICE}|open|alive|available|in\s+office)
        |latest|newest|most\s+recent|breaking|trending|upcoming|when\s+is\s+the\s+next|next\s+(week|month|year|game
            |match|election|episode|release|launch)
        |last\s+(night|week|weekend|month|year|game|match|season|election)|this\s+year's
        |(days|weeks|hours|months)\s+(until|till|left\s+(until|till|before))
        |weather\s+(in|at|for|today|tomorrow|like|this|outside|now)|forecast\s+(for|in|today|tomorrow|this)
        |temperature\s+(in|at|outside)|stock\s+price|share\s+price|exchange\s+rate\s+(of|for|between|today)
        |usd\s+to|eur\s+to|what('s|\s+is)\s+the\s+(current\s+)?(exchange\s+rate|price\s+of)
        |(final|latest|current|live)\s+score|score\s+of\s+(the|last|today)|standings|live\s+(stream|updates?|results?)
        |who\s+won|who\s+is\s+winning|who\s+is\s+leading|polls?\s+(say|show|numbers|results)|election\s+results?
        |news\s+(today|about|on|headlines|stories)|(latest|top|breaking)\s+news|in\s+the\s+news|headlines
        |(who|what)\s+is\s+the\s+(current\s+)?{_OFFICE}|who\s+is\s+the\s+pope
        |(what|which)\s+(day|date|month|year)\s+is\s+(it|today)|what\s+time\s+is\s+it|how\s+old\s+is
        |in\s+\d+\s+(days|hours|minutes)|^(is|are)\s+(\w+\s+){{1,3}}(down|open|closed)(?=(\s+(right\s+now|today))?\W*$)
        |how\s+much\s+(is|are)\s+(\w+\s+){{1,3}}worth|what('s|\s+is|\s+are)\s+(\w+\s+){{1,3}}worth(?!\s+(it|the))|(who|which|what)\s+is\s+the\s+(richest|wealthiest)
        |how\s+many\s+(subscribers|followers|views|likes|downloads|users|members)\s+(does|do|has|have)
    )\b""",
    re.VERBOSE,  # matched against the lowercased question: a third of the time of re.IGNORECASE (16 against 41 us)
)

# The same for questions in nine other languages (es, fr, de, pt, it, ru; zh, ja, ko below): their words for today,
# now, tomorrow, yesterday, current, latest, news, weather, exchange rates, who won. Only words that are not also
# English words or common ones of another meaning ("actual" in Spanish only after an article or a noun, "hier"
# in French only with soir / matin: it is German for "here"; not German "gerade", which is also "even").
_VOLATILE_ELSEWHERE = re.compile(
    r"""\b(
        hoy|ahora|ahorita|mañana|ayer|anoche|actualmente|en\s+este\s+momento|esta\s+(semana|noche|tarde)
        |este\s+(año|mes|fin\s+de\s+semana)|(el|la|los|las)\s+actual(es)?
        |(precio|presidente|cotización|valor|situación|estado|campeón|récord|gobierno)\s+actual
        |últim[oa]s?\s+(noticias|versión|versiones|modelo|resultados?|partido|episodio)|más\s+recientes?
        |noticias\s+(de|del|sobre)|cotización|tipo\s+de\s+cambio|faltan\s+para|quién\s+ganó|a\s+cuánto\s+está
        |aujourd['\u2019]hui|maintenant|actuellement|en\s+ce\s+moment|demain|hier\s+(soir|matin)|d['\u2019]hier|ce\s+soir
        |cette\s+(semaine|année|saison)|actuel(le)?s?|derni[eè]re?s?\s+(nouvelles|version|modèle|résultats?|match
            |épisode|sortie)|plus\s+récente?s?|quoi\s+de\s+neuf|l['\u2019]actualité|qui\s+a\s+gagné|météo
        |cours\s+(de\s+l['\u2019](action|or|euro)|du\s+(dollar|bitcoin|pétrole))
        |heute|heutigen?|jetzt|derzeit|momentan|aktuell\w*|morgen|gestern|diese\s+woche|dieses\s+jahr|neueste\w*
        |nachrichten\s+(aus|über|zu)|(wechsel|aktien|bitcoin|euro|dollar|gold)-?kurs|wer\s+hat\s+(\w+\s+){0,4}gewonnen
        |wetter\s+(in|am|für|heute|morgen)
        |hoje|agora|amanhã|ontem|atualmente|atua(l|is)|neste\s+momento|este\s+(ano|mês)|últimas\s+notícias
        |notícias\s+(de|do|da|sobre)|mais\s+recentes?|última\s+versão|último\s+modelo|cotação|quem\s+ganhou
        |previsão\s+do\s+tempo
        |oggi|odiern[oa]|adesso|domani|ieri|stasera|stanotte|attualmente|attual[ei]|in\s+questo\s+momento
        |questa\s+settimana|quest['\u2019]anno|ultime\s+notizie|notizie\s+(di|del|della|sulla|sul|su)|più\s+recente
        |ultima\s+versione|ultimo\s+modello|chi\s+ha\s+vinto|che\s+tempo\s+fa|quanto\s+vale
        |сегодня|сегодняшн\w*|сейчас|завтра|вчера|вчерашн\w*|текущ\w*|нынешн\w*|в\s+данный\s+момент
        |на\s+этой\s+неделе|в\s+этом\s+году|последн\w*\s+(новост\w*|верси\w*|модел\w*|результат\w*)
        |новост\w*\s+(о|об|про|сегодня|дня)|курс\s+(доллара|евро|рубля|юаня|валют\w*|биткоина|акций)|кто\s+выиграл
        |погода\s+(в|во|на)
    )\b""",
    re.VERBOSE,
)
# Chinese, Japanese and Korean write without spaces: their words are matched anywhere in the text.
_VOLATILE_CJK = re.compile(
    r"""今天|今日|今晚|今年|今の|今は|今何時|现在|現在|目前|当前|當前|最新|昨天|昨日|昨晚|明天|明日|本周|这周|這週|今週
        |天气|天氣|天気|股价|股價|株価|汇率|匯率|為替|新闻|新聞|ニュース|比分|谁赢|誰贏|现任|現任
        |오늘|지금|현재|최신|어제|내일|이번\s*주|올해|날씨|주가|환율|뉴스|누가\s*이겼""",
    re.VERBOSE,
)

_DATED_ANSWER = re.compile(
    r"""(
        \b(19|20)\d\d\b
        |\b(jan(uary)?|feb(ruary)?|mar(ch)?|apr(il)?|may|june?|july?|aug(ust)?|sep(t(ember)?)?|oct(ober)?
            |nov(ember)?|dec(ember)?)\.?\s+\d{1,2}\b
        |[$€£¥₹₽₩]\s?\d|\b\d+(\.\d+)?\s?(usd|eur|gbp|dollars|euros|cents)\b|\b\d+(\.\d+)?\s?%
        |\b(as\s+of|currently|at\s+the\s+time\s+of\s+writing|recently)\b
        |(19|20)\d\d\s?(年|년)|\d{1,2}\s?(月\s?\d{1,2}\s?日|월\s?\d{1,2}\s?일)|\d(\.\d+)?\s?(元|円|원|руб)
        |\b(actualmente|actuellement|aktuell|atualmente|attualmente|сейчас|на\s+данный\s+момент)\b|目前|現在|현재
    )""",
    re.IGNORECASE | re.VERBOSE,
)


def is_volatile(question: str) -> bool:
    """True if the answer to question depends on when it is asked (in English, or one of nine other languages)."""
    lowered = question.lower()
    return (
        _VOLATILE_QUESTION.search(lowered) is not None
        or _VOLATILE_ELSEWHERE.search(lowered) is not None
        or (not lowered.isascii() and _VOLATILE_CJK.search(lowered) is not None)
    )


def quotes_dates_or_prices(answer: str) -> bool:
    """True if answer quotes a year, a date, a price or a percentage (or says it is current)."""
    return _DATED_ANSWER.search(answer) is not None


@dataclass(frozen=True, slots=True)
class FreshnessPolicy:
    """How long answers of each kind may be kept; 0 means "never cache"."""

    volatile_ttl_seconds: int = 0
    dated_answer_ttl_seconds: int = 86_400

    def may_store(self, volatile: bool, requested_ttl_seconds: int | None = None) -> bool:
        """False if no answer to a question is ever stored: a time-sensitive question (volatile: is_volatile of
        the question as the cache keys it), with volatile TTL 0, and no TTL the caller asked for explicitly."""
        return requested_ttl_seconds is not None or self.volatile_ttl_seconds > 0 or not volatile

    def ttl(
        self, volatile: bool, answer: str, default_ttl_seconds: int, requested_ttl_seconds: int | None = None
    ) -> tuple[int, Freshness]:
        """The TTL to store an answer with, and the kind of question and answer (volatile: is_volatile of the
        question as the cache keys it, so the lookup and the store judge the same text). A TTL the caller asked
        for explicitly is theirs to decide and is kept; otherwise the default, shortened by the rules (never
        lengthened)."""
        kind: Freshness
        if volatile:
            kind, limit = "volatile", self.volatile_ttl_seconds
        elif quotes_dates_or_prices(answer):
            kind, limit = "dated", self.dated_answer_ttl_seconds
        else:
            kind, limit = "evergreen", default_ttl_seconds
        if requested_ttl_seconds is not None:
            return requested_ttl_seconds, kind
        return min(default_ttl_seconds, limit), kind
