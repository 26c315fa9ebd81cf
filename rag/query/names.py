"""A name as its article gives it in full: "Biden" -> "President Joe Biden", "JetBlue" -> "JetBlue Airways".

News stories name a person or an organisation in full once, usually at its first mention, and by a short form
after that; a reader model often copies the short form from the sentence it answers from. A short answer is
more useful, and easier to check, as the article's full name. No library here does this: spaCy's models are
not installable here (issue #14) and coreference is far more than this needs, so it is a rule over runs of
capitalised words of the same article:

- the short form must be one capitalised word (an optional "The" aside): a longer name is already given in
  full ("Liz Cheney", "New York");
- a run that ends with it adds given names or titles before it ("Joe Biden", "President Joe Biden");
- a run that begins with it adds only a company's kind after it ("JetBlue Airways"), never what merely
  follows ("JetBlue CEO Robin Hayes");
- words before it that are no part of a name are dropped: stop words ("When Biden ..."), days, months,
  nationalities, places' "West" or "New", words the article also writes in lower case (titles such as
  "President" excepted), and a sentence's opening verb or adverb ("Struggling", "Exiled", "Reportedly");
- headlines in title case ("Biden Tests Positive For Covid") are not read;
- the run in the answer's own sentence wins, then the article's first.
"""

from __future__ import annotations

import re
from typing import Optional

# One capitalised word of a name: "U.S.", "Dr.", "O'Connor", "JetBlue", "Al-Sadr"; a possessive ends it.
_NAME_WORD = re.compile(
    r"(?:[A-Z]\.){2,}|(?:Dr|Mr|Mrs|Ms|Sen|Rep|Gov|Gen|Lt|Col|Sgt|St|Jr|Sr|Prof|Rev)\.(?= [A-Z])"
    r"|[A-Z][\w-]*(?:['\u2019][A-Z][\w-]*)?"
)
MAX_ADDED_WORDS = 3

_STOP = frozenset(
    "a about after against all also an and another any as at because before both but by despite during each "
    "earlier either even every few for former from he her his how however i if in including into it its later "
    "many meanwhile more most much neither no nor not now of on once one only or other our over own per several "
    "senior she since so some still such than that the their then there these they this those though through "
    "to top under until was we were what when where whether which while who why with yet you "
    "two three four five six seven eight nine ten contact join make read see watch".split()
)
CALENDAR = frozenset(
    "monday tuesday wednesday thursday friday saturday sunday january february march april may june july "
    "august september october november december".split()
)
# Words that make another place of a place: "West Virginia" is not "Virginia".
_PLACE_MAKERS = frozenset("north south east west northern southern eastern western new upper lower central".split())
# Nationalities written before a name, which are not part of it: "German Marlene Weingartner".
NATIONALITIES = frozenset(
    "american british english scottish welsh irish french german italian spanish portuguese dutch belgian swiss "
    "austrian swedish norwegian danish finnish polish russian ukrainian greek turkish chinese japanese korean "
    "indian pakistani australian canadian mexican brazilian argentine african egyptian israeli iranian iraqi "
    "saudi syrian afghan nigerian kenyan european asian".split()
)
# Roles that stand before a name without being part of it: "JetBlue CEO Robin Hayes", "Singer Sam Endicott".
_ROLES = frozenset("ceo cfo coo cto chair actor actress singer rapper journalist writer author artist wing".split())
# Titles stay before a name even where the article also writes them in lower case ("the president").
_TITLES = frozenset(
    "president vice prime minister secretary sen senator rep representative gov governor mayor dr first lady "
    "chancellor king queen prince princess pope judge justice chief general gen attorney speaker leader "
    "ambassador commissioner chairman chairwoman director coach captain".split()
)
# What a company's name may end with after its short form ("JetBlue Airways"). Not the kinds that follow a
# place to name another thing ("Denver Airport", "Virginia Department of Health", "Washington University").
_COMPANY_KINDS = frozenset(
    "airways airlines inc corp corporation co company holdings group motors plc ltd".split()
)
_NO_NAME = _STOP | CALENDAR  # a short answer of these is no name
_NO_NAME_PART = _NO_NAME | _ROLES | _PLACE_MAKERS | NATIONALITIES  # never added before a name


def _word(token: str) -> str:
    return token.rstrip(".").lower()


def _name_runs(text: str) -> list[list[tuple[int, int]]]:
    """Runs of capitalised words in ``text`` joined by one space, outside title-case lines (headlines): each as
    the (start, end) of its words."""
    runs: list[list[tuple[int, int]]] = []
    line_start = 0
    for line in text.split("\n"):
        words = line.split()
        if len(words) < 4 or sum(1 for w in words if w[:1].isupper()) < 0.6 * len(words):
            current: list[tuple[int, int]] = []
            for m in _NAME_WORD.finditer(line):
                if m.start() > 0 and (line[m.start() - 1].isalnum() or line[m.start() - 1] in "'\u2019-"):
                    continue  # inside a word, not the start of one
                s, e = m.start() + line_start, m.end() + line_start
                if current and text[current[-1][1] : s] != " ":
                    runs.append(current)
                    current = []
                current.append((s, e))
            if current:
                runs.append(current)
        line_start += len(line) + 1
    return runs


def _opens_sentence(text: str, start: int) -> bool:
    """Whether the word at ``start`` begins a line, a sentence or a quote, where any word is capitalised."""
    before = text[max(0, start - 4) : start].rstrip(" \"'\u201c\u2018")
    return not before or before[-1] in ".!?:)\n\u2014"


def _name_word(short: str) -> Optional[str]:
    """The one capitalised word ``short`` is ("The Avalanche" -> "Avalanche"), else None."""
    words = short.strip().strip(".,;:").split()
    if len(words) == 2 and words[0].lower() == "the":
        words = words[1:]
    if len(words) != 1 or not words[0][:1].isupper() or _word(words[0]) in _NO_NAME:
        return None
    return words[0]


def full_name(short: str, text: str, near: tuple[int, int] = (0, 0), question: str = "") -> Optional[tuple[int, int]]:
    """The span in ``text`` of the full name that ``short`` abbreviates, or None when it is no name or the
    article gives no longer form. ``near``: the span of the answer's sentence, whose own run is preferred;
    ``question``: its words in lower case are common words too ("Which bookmaker" for "Bookmakers Ladbrokes")."""
    wanted = _name_word(short)
    if wanted is None:
        return None
    lowercase = set(re.findall(r"\b[a-z][\w-]*", text + " " + question))

    def common(w: str) -> bool:
        """Whether the article or the question writes ``w`` in lower case, or its singular: "bookmaker(s)"."""
        return w in lowercase or (w.endswith("s") and not w.endswith("ss") and w[:-1] in lowercase)

    def name_part(word: tuple[int, int]) -> bool:
        """Whether a capitalised word before the short form belongs to the name."""
        w = _word(text[word[0] : word[1]])
        if w in _TITLES:
            return True
        if w in _NO_NAME_PART or common(w):
            return False
        # A sentence may open with a verb or an adverb that the article writes nowhere else ("Struggling Japanese
        # carmakers"), and any word there is capitalised.
        return not (_opens_sentence(text, word[0]) and len(w) > 5 and w.endswith(("ing", "ed", "ly")))

    found: list[tuple[int, int]] = []
    for run in _name_runs(text):
        words = [text[s:e] for s, e in run]
        for i in (k for k, w in enumerate(words) if w == wanted):
            first, last = i, i + 1  # the full name is run[first:last]
            while last < len(words) and last - i <= 2 and _word(words[last]) in _COMPANY_KINDS:
                last += 1
            if last < len(words) or text.startswith(" of ", run[last - 1][1]):
                last = i + 1  # the kind must end the name ("Virginia Department of Health" is not Virginia's)
            while first > 0 and i - first < MAX_ADDED_WORDS and name_part(run[first - 1]):
                first -= 1
            if first < i and text[max(0, run[first][0] - 4) : run[first][0]] == " of ":
                first += 1  # the tail of a longer name: "(Hall of) Famer Willie Mays"
            if (first, last) != (i, i + 1):
                found.append((run[first][0], run[last - 1][1]))
    inside = [span for span in found if span[0] >= near[0] and span[1] <= near[1]]
    return (inside or found or [None])[0]
