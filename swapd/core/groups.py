"""GroupPlanner: llama-swap's swap groups (`routing.router.settings.groups`). Pure; never logs.

Every model belongs to exactly one group; models named in no group form the implicit group
`(default)` with `swap: true, exclusive: true`, which is the classic "one model at a time".
"""

from __future__ import annotations

from collections.abc import Collection, Sequence, Set
from dataclasses import dataclass

from swapd.core.plan import ModelUsage

DEFAULT_GROUP = "(default)"


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupSpec:
    id: str
    members: tuple[str, ...]
    swap: bool = True
    """Starting a member evicts the group's other running members; false lets them coexist."""
    exclusive: bool = True
    """Starting a member evicts the running members of every other, non-persistent group."""
    persistent: bool = False
    """Members are never evicted by a load from another group (no effect inside the group)."""


class GroupPlanner:
    """Evicts by group flags, exactly as llama-swap does unless `symmetric` is set.

    For each running model `m` other than the target `t`, with `G(x)` the group of `x`:

    - same group (`G(m) == G(t)`): evict `m` iff `swap(G(t))`;
    - other group: never evict `m` if `persistent(G(m))`; otherwise evict `m` iff
      `exclusive(G(t))`.

    That is llama-swap's rule, asymmetry included: loading a member of a non-exclusive group
    leaves running members of exclusive groups alone, so whether an exclusive model ends up
    sharing the machine depends on which of the two was loaded first.

    `symmetric=True` (swapd only) adds one case, for another-group `m` that is not persistent:
    also evict `m` iff `exclusive(G(m))` and not `persistent(G(t))`. It only ever adds evictions
    to llama-swap's rule, and keeps this invariant from any state that satisfied it (the empty
    one included): two models of different groups never run together when neither group is
    persistent and at least one of them is exclusive. Persistent groups are exempt both ways:
    they are never evicted by another group, and loading one does not evict an exclusive group's
    member (that pair is allowed, so it must not depend on load order). The one order-dependent
    case left is a group that is both exclusive and persistent: loading it evicts other
    non-persistent models (llama-swap's rule), but a model loaded after it cannot evict it.
    """

    def __init__(
        self, groups: Sequence[GroupSpec], models: Collection[str], *, symmetric: bool = False
    ) -> None:
        self._symmetric = symmetric
        self._group_of: dict[str, GroupSpec] = {}
        seen: set[str] = set()
        for group in groups:
            if group.id == DEFAULT_GROUP:
                raise ValueError(f"group id {DEFAULT_GROUP!r} is reserved")
            if group.id in seen:
                raise ValueError(f"group {group.id!r} is defined twice")
            seen.add(group.id)
            for member in group.members:
                if member not in models:
                    raise ValueError(f"group {group.id!r}: {member!r} is not a model")
                other = self._group_of.get(member)
                if other is group:
                    raise ValueError(f"group {group.id!r} lists {member!r} twice")
                if other is not None:
                    raise ValueError(
                        f"model {member!r} is in group {other.id!r} and in group {group.id!r}"
                    )
                self._group_of[member] = group
        ungrouped = tuple(sorted(m for m in models if m not in self._group_of))
        self._default = GroupSpec(id=DEFAULT_GROUP, members=ungrouped)
        for member in ungrouped:
            self._group_of[member] = self._default

    def group_of(self, model: str) -> GroupSpec:
        """The group `model` belongs to; `(default)` for any model in no group."""
        return self._group_of.get(model, self._default)

    def evictions(
        self, target: str, running: Set[str], usage: ModelUsage | None = None
    ) -> tuple[str, ...]:
        target_group = self.group_of(target)
        return tuple(
            sorted(
                m for m in running if m != target and self._evicts(target_group, self.group_of(m))
            )
        )

    def on_swap_start(self, target: str, evict: tuple[str, ...]) -> None:
        pass

    def _evicts(self, target: GroupSpec, running: GroupSpec) -> bool:
        if running.id == target.id:
            return target.swap
        if running.persistent:
            return False
        if target.exclusive:
            return True
        return self._symmetric and running.exclusive and not target.persistent
