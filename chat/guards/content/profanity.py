"""The profanity model of the content filter (``alt-profanity-check``, evaluated in pure Python
from the package's own fitted weights) and the "abuse" signal it gives (``profanity_signal``):
venting is recorded, profanity aimed at a person flags (the package docstring's abuse policy).
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, Final

from chat.guards.content.normalise import plain
from chat.guards.content.verdict import FLAG_AT, Signal

# The model scores mild words high ("crap" 0.99, "hell" 0.99): only near-certain profanity aimed
# at a person flags, and the flag's weight rises from FLAG_AT to 0.8 as the model gets surer.
PROFANITY_DIRECTED: Final = 0.8
PROFANITY_FLOOR: Final = 0.5  # below this the model's score is not even recorded


class _ProfanityModel:
    """alt-profanity-check's fitted model, evaluated term by term.

    The package's ``predict_prob`` builds a sparse matrix and runs five calibrated SVMs through
    scikit-learn (2.5-3.5 ms a call). The model is linear in TF-IDF features, so each vocabulary
    term gets its idf and its five idf-scaled coefficients once, and a message costs a dictionary
    lookup per word (30-40 µs for 200 characters). Should a release of the package change the
    model's shape, the package's own ``predict_prob`` is used instead.
    """

    def __init__(self) -> None:
        # Imported on first use, not at start-up: importing the package (scikit-learn and the
        # fitted model) takes about 1.5 s.
        from profanity_check import profanity_check as package

        self._predict_prob: Callable[[list[str]], Any] = package.predict_prob
        self._terms: dict[str, tuple[float, tuple[float, ...]]] = {}
        self._calibrated: list[tuple[float, float, float]] = []  # (intercept, a, b) per SVM
        self._token = re.compile(r"(?u)\b\w\w+\b")
        try:
            self._load(package.vectorizer, package.model)
        except (AttributeError, ValueError, TypeError, IndexError):
            self._terms = {}
        self.fast = bool(self._terms)

    def _load(self, vectorizer: Any, model: Any) -> None:
        params = vectorizer.get_params()
        expected = {
            "analyzer": "word",
            "binary": False,
            "lowercase": True,
            "ngram_range": (1, 1),
            "norm": "l2",
            "preprocessor": None,
            "strip_accents": None,
            "sublinear_tf": False,
            "tokenizer": None,
            "use_idf": True,
        }
        if any(params.get(key) != value for key, value in expected.items()):
            raise ValueError("unexpected vectorizer")
        if model.method != "sigmoid" or list(model.classes_) != [0, 1]:
            raise ValueError("unexpected model")
        self._token = re.compile(params["token_pattern"])
        coefs = []
        for calibrated in model.calibrated_classifiers_:
            svm, (calibrator,) = calibrated.estimator, calibrated.calibrators
            coefs.append(svm.coef_[0])
            self._calibrated.append(
                (float(svm.intercept_[0]), float(calibrator.a_), float(calibrator.b_))
            )
        idf = vectorizer.idf_
        for term, column in vectorizer.vocabulary_.items():
            weight = float(idf[column])
            self._terms[term] = (weight, tuple(weight * float(c[column]) for c in coefs))

    def prob(self, text: str) -> float:
        """Probability that ``text`` is offensive, as ``profanity_check.predict_prob`` gives it."""
        if not self.fast:
            return float(self._predict_prob([text])[0])
        counts = Counter(t for t in self._token.findall(text.lower()) if t in self._terms)
        dots = [0.0] * len(self._calibrated)
        norm = 0.0
        for term, count in counts.items():
            idf, weights = self._terms[term]
            norm += (count * idf) ** 2
            for k, weight in enumerate(weights):
                dots[k] += count * weight
        norm = math.sqrt(norm) or 1.0
        total = 0.0
        for dot, (intercept, a, b) in zip(dots, self._calibrated, strict=True):
            decision = dot / norm + intercept
            total += 1.0 / (1.0 + math.exp(a * decision + b))
        return total / len(self._calibrated)


_model: _ProfanityModel | None = None
_model_lock = threading.Lock()


def profanity_model() -> _ProfanityModel:
    """The profanity model, loaded on first use (importing the package takes about 1.5 s)."""
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                _model = _ProfanityModel()
    return _model


# Self-censored words ("b*tch", "f**k") read back, for the profanity model only.
_MASKED = re.compile(r"(?<![a-z*#%])(?=[a-z*#%]*[a-z])(?=[a-z*#%]*[*#%])[a-z*#%]{3,}(?![a-z*#%])")
_PROFANE: Final = (
    "fuck", "fucking", "fucker", "fucked", "shit", "shitty", "bitch", "cunt", "asshole",
    "bastard", "damn", "dick", "piss", "crap", "whore", "slut", "motherfucker", "bullshit",
    "dumbass", "prick", "twat", "wanker",
)  # fmt: skip


def _unmask_word(match: re.Match[str]) -> str:
    masked = match[0]
    for word in _PROFANE:
        if len(word) == len(masked) and all(
            m == w or m in "*#%" for m, w in zip(masked, word, strict=True)
        ):
            return word
    return masked


_DIRECTED = re.compile(
    r"\b(?:you|u|ya|your|ur|you're|youre|yourself|yourselves|y'all|yall|thou|agent|agents|staff"
    r"|support team|bot|devs|developers|employees|people at nimbus|nimbus team)\b"
    # a name-calling on its own between commas addresses the reader: "listen, bitch, fix it"
    r"|(?:^|[,.!?;:])\s*(?:(?:listen|hey|oi|look|ok|okay|yo)\W+)?(?:\w+ )?(?:idiots?|morons?"
    r"|bitch|bitches|assholes?|dumbass|cunts?|jerks?|losers?|retards?|imbeciles?|clowns?|scum"
    r"|bastards?|pricks?|twats?|wankers?|dickheads?|dipshits?)\s*(?:[,.!?;:]|$)"
)
_HAS_LETTER = re.compile(r"[^\W\d_]")


def profanity_signal(text: str, deobfuscated: str | None) -> Signal | None:
    """The "abuse" signal of the model's score for ``text`` (and its de-obfuscated view), or
    None below ``PROFANITY_FLOOR``: flagging weight when aimed at a person, else a small one."""
    if not _HAS_LETTER.search(text):
        return None
    model = profanity_model()
    p = model.prob(text)
    if deobfuscated is not None:
        p = max(p, model.prob(deobfuscated))
    readable = deobfuscated or plain(text)
    if "*" in text or "#" in text or "%" in text:
        readable = _MASKED.sub(_unmask_word, readable)
        p = max(p, model.prob(readable))
    if p < PROFANITY_FLOOR:
        return None
    if p >= PROFANITY_DIRECTED and _DIRECTED.search(readable):
        weight = FLAG_AT + (0.8 - FLAG_AT) * (p - PROFANITY_DIRECTED) / (1 - PROFANITY_DIRECTED)
    else:
        weight = 0.3 * p  # venting: recorded, never flagged on its own
    return Signal("abuse", weight, f"profanity:{p:.2f}")
