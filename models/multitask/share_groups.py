"""How a multi-task model declares which of its tensors it shares, and in which aggregation group.

Every shared tensor is uploaded as ``"<group>/<state_dict key>"``. Groups, and what
:class:`~lightning_fed.strategies.PersonalizedAggregation` does with them (FedAvg averages them all):

- ``global``: the template's global part; averaged over all clients (with conflict coordination in PF-MSMTrec);
- ``task<t>``: the template's part of the experts assigned to task t; averaged over the clients;
- ``gate<t>``: task t's gate; averaged over the clients;
- ``bn``: BatchNorm weights and statistics, only when FedBN is off (with FedBN nothing of BatchNorm is shared);
- ``scenario`` (template) or ``expert`` (no template): the experts' scenario knowledge, personalized aggregation;
- ``tower<t>``: task t's tower, personalized aggregation of the towers.

Embedding tables and the numerical projection are never shared (feature id spaces differ between scenarios).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from lightning_fed.models.multitask.template_linear import TemplateLinear


def declare_groups(net: nn.Module, fedbn: bool, group_of: Callable[[str, nn.Module], str | None]) -> dict[str, str]:
    """Map every shared ``state_dict`` key of ``net`` to its group.

    Args:
        net: the network.
        fedbn: keep BatchNorm local (FedBN): its parameters and statistics are not shared.
        group_of: the group of a module's own tensors from its path (None: never shared). TemplateLinear
            modules are split by the function's answer ``"template:<task>"`` into global/task/scenario parts.
    """
    groups: dict[str, str] = {}
    for path, module in net.named_modules():
        names = [n for n, _ in module.named_parameters(recurse=False)] + [
            n for n, _ in module.named_buffers(recurse=False)
        ]
        if not names or path.startswith("embedding"):
            continue
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            group = None if fedbn else "bn"
        else:
            group = group_of(path, module)
        if group is None:
            continue
        for name in names:
            if isinstance(module, TemplateLinear) and group.startswith("template:"):
                part = name.split("_", 1)[1]  # weight_global -> global
                resolved = {"global": "global", "task": f"task{group.split(':')[1]}", "scenario": "scenario"}[part]
            else:
                resolved = group
            groups[f"{path}.{name}"] = resolved
    return groups
