"""One proxy for every role hosted by a worker group.

`RoleProxy(group, "actor", table)` has the dispatched methods of the actor: calling
`proxy.update_policy(batch, kl_coef)` spreads the call over the group's ranks the way the
method declares (:mod:`rlhf.dispatch`), runs it through :meth:`RoleWorker.call` on each rank,
and gathers one answer. The controller cannot tell a proxy from the role object itself.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from rlhf.data.batch import Batch
from rlhf.dispatch import (
    ALL,
    ENGINES,
    RANK_ZERO,
    SPLIT,
    SPLIT_EXACT,
    Dispatch,
    gather_engines,
    gather_shards,
    mean_metrics,
    reduce_all,
    shard_for_engines,
    shard_rows,
)
from rlhf.distributed.group import WorkerGroup
from rlhf.distributed.worker import strip_local_meta


class RoleProxy:
    """The role `role` of `group`, with the methods of its dispatch `table`.

    `restore_meta` is Batch metadata the controller's side adds back to Batch answers (the
    tokenizer, which stays in its process); `ranks_per_engine` is how many ranks one rollout
    engine spans (``engines`` dispatch)."""

    def __init__(self, group: WorkerGroup, role: str, table: dict[str, Dispatch], *,
                 restore_meta: dict[str, Any] | None = None, ranks_per_engine: int = 1, description: str = ""):
        self.group, self.role, self.table = group, role, table
        self.restore_meta = restore_meta or {}
        self.ranks_per_engine = ranks_per_engine
        self.description = description or f"{role} on {group.description}"

    def __getattr__(self, method: str) -> Callable[..., Any]:
        table = self.__dict__.get("table", {})
        if method not in table:
            raise AttributeError(f"the {self.__dict__.get('role')} role has no dispatched method {method!r} (declared: {', '.join(sorted(table)) or 'none'})")
        return functools.partial(self._call, method, table[method])

    def _call(self, method: str, spec: Dispatch, *args: Any, **kwargs: Any) -> Any:
        label = f"{self.role}.{method}"
        args = tuple(strip_local_meta(arg) for arg in args)
        world = self.group.world_size
        if spec.mode in (SPLIT, SPLIT_EXACT, ENGINES):
            if spec.mode == ENGINES:
                shards, padding = shard_for_engines(args[0], world, self.ranks_per_engine)
            else:
                shards, padding = shard_rows(args[0], world, allow_padding=spec.mode == SPLIT)
            per_rank = [(self.role, method, (shard, *args[1:]), kwargs, spec.weight) for shard in shards]
            answers = self.group.call_per_rank("call", per_rank, label=label)
            if spec.mode == SPLIT_EXACT:
                return mean_metrics([metrics for metrics, _ in answers], [weight for _, weight in answers])
            gathered = gather_engines(answers, self.ranks_per_engine, padding) if spec.mode == ENGINES else gather_shards(answers, padding)
            return self._restored(gathered)
        ranks = [0] if spec.mode == RANK_ZERO else None
        answers = self.group.call_method("call", self.role, method, args, kwargs, ranks=ranks, label=label)
        return self._restored(reduce_all(answers, spec.reduce) if spec.mode == ALL else answers[0])

    def _restored(self, answer: Any) -> Any:
        if isinstance(answer, Batch) and self.restore_meta:
            answer.meta.update(self.restore_meta)
        return answer
