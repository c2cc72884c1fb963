"""The roles the controller calls. With the local backend each is an in-process object; worker
groups of the distributed backend expose the same methods, so the loop never changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from rlhf.rewards.combine import RewardCombiner
from rlhf.rollout.base import RolloutEngine
from rlhf.workers.actor import ActorWorker
from rlhf.workers.ref import RefWorker


@dataclass
class Roles:
    actor: ActorWorker
    rollout: RolloutEngine
    reward: RewardCombiner
    ref: Optional[RefWorker] = None
