"""Which plan a scope-filtered KNN query runs with, chosen per scope by the time each plan takes.

RediSearch runs `(@scope:{s})=>[KNN k ...]` one of two ways: walk the HNSW graph in batches and drop what the filter
rejects, or compare the query with every vector the filter passes (ad hoc brute force). It picks one per query by
a built-in estimate. Measured on Redis Stack 7.4 (`python bench/knn.py`), that estimate is wrong where a scope is
most of an index of a few thousand to some tens of thousands of entries, which is the common case of one
application with one model and one system prompt: brute force over 30,000 vectors takes 7-9 ms where the graph
takes about 1 ms. Forcing the graph is no answer either: for a scope of 100 entries in an index of 100,000 it takes
37 ms where brute force takes 0.6 ms.

So the store lets each scope's own timings decide. A scope's first search runs the server's choice. While the plan
in use takes more than a couple of milliseconds (there is little to win below that), the other is tried: forced
batches on the next search, then the faster of the two (by a moving average of the client-side time) runs, and
the slower is timed again now and then (rarely when it was far slower), so a scope that grows or shrinks finds
its way. A small scope, whose brute force is fast, never pays for a forced batch search. Only servers that accept
`HYBRID_POLICY` (RediSearch) get a choice; the others keep their own planner.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class _Timings:
    searches: int = 0
    server_s: float | None = None
    """Moving average of the time with the server's own choice."""
    batches_s: float | None = None
    """Moving average of the time with HYBRID_POLICY BATCHES."""


class PlanChooser:
    """Per scope: whether to force HYBRID_POLICY BATCHES, by which plan has been faster for it.

    good_s: a plan averaging no more than this is kept without trying the other. explore_every: otherwise, every
    so many searches the plan not in use is timed again (far_factor times as rarely when it was at least
    far_factor times slower). alpha: the weight of a new time in the moving average. At most max_scopes scopes are
    remembered (least recently searched forgotten first).
    """

    def __init__(
        self,
        *,
        good_s: float = 0.002,
        explore_every: int = 32,
        far_factor: float = 8.0,
        alpha: float = 0.3,
        max_scopes: int = 4096,
    ) -> None:
        if good_s < 0 or explore_every < 2 or far_factor < 1 or not 0 < alpha <= 1 or max_scopes < 1:
            raise ValueError(
                "good_s >= 0, explore_every >= 2, far_factor >= 1, 0 < alpha <= 1 and max_scopes >= 1 are required"
            )
        self._good = good_s
        self._explore_every = explore_every
        self._far = far_factor
        self._alpha = alpha
        self._max = max_scopes
        self._scopes: OrderedDict[str, _Timings] = OrderedDict()

    def batches(self, scope: str) -> bool:
        """True if this search of scope should force batches (counts the search)."""
        t = self._scopes.get(scope)
        if t is None:
            t = self._scopes[scope] = _Timings()
            if len(self._scopes) > self._max:
                self._scopes.popitem(last=False)
        else:
            self._scopes.move_to_end(scope)
        t.searches += 1
        if t.server_s is None:
            return False
        in_use_is_batches = t.batches_s is not None and t.batches_s < t.server_s
        in_use, other = (t.batches_s, t.server_s) if in_use_is_batches else (t.server_s, t.batches_s)
        assert in_use is not None
        if in_use <= self._good:
            return in_use_is_batches
        if other is None:
            return True  # the server's plan is slow and batches were never tried
        every = self._explore_every * (int(self._far) if other >= self._far * in_use else 1)
        return in_use_is_batches != (t.searches % every == 0)

    def record(self, scope: str, batches: bool, seconds: float) -> None:
        """How long a search of scope took with the plan batches() chose."""
        t = self._scopes.get(scope)
        if t is None:
            return
        if batches:
            t.batches_s = seconds if t.batches_s is None else t.batches_s + self._alpha * (seconds - t.batches_s)
        else:
            t.server_s = seconds if t.server_s is None else t.server_s + self._alpha * (seconds - t.server_s)
