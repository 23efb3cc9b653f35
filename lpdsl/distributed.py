"""Metric losses over the global batch under ``torch.distributed`` (DDP).

A non-decomposable loss (AUC, F-beta, ...) on a rank's local batch is not the loss on the
global batch: the LP must see every rank's scores. :func:`gather_batch` all-gathers scores and
labels so that every rank holds the global batch, and :class:`GlobalBatchLoss` applies a loss
to it.

``all_gather`` is not differentiable, so the gathered copy of a rank's own scores is replaced
by the local tensor itself: autograd then carries the global loss's gradient into the local
part (the slices belonging to other ranks are constants here; each of those ranks computes
the same global loss and differentiates its own slice). Ranks may hold batches of different
sizes: the sizes are gathered first, every batch is padded to the largest, and the padding is
cut off again.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from lpdsl.errors import DSLError


def _is_distributed(group: dist.ProcessGroup | None) -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def _all_gather_padded(
    tensor: torch.Tensor, sizes: list[int], group: dist.ProcessGroup | None
) -> list[torch.Tensor]:
    """Every rank's ``tensor`` (first dimensions given by ``sizes``), without gradient."""
    n_max = max(sizes)
    padded = tensor.new_zeros((n_max, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor.detach()
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded, group=group)
    return [part[:n] for part, n in zip(parts, sizes, strict=True)]


#: The dtypes a rank's scores and labels may have, by code (for the check across ranks).
_DTYPES = [
    torch.float64, torch.float32, torch.float16, torch.bfloat16,
    torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8,
]  # fmt: skip
#: Trailing dimensions compared across ranks (beyond: refused before any collective).
_MAX_TRAILING = 4


def _describe_meta(row: list[int]) -> str:
    """A rank's scores and labels as ``float32 (n, 3)`` for a message."""
    out = []
    for k in (0, 1):
        code, ndim, *dims = row[1 + k * (2 + _MAX_TRAILING) : 1 + (k + 1) * (2 + _MAX_TRAILING)]
        dtype = str(_DTYPES[code]).replace("torch.", "")
        out.append(f"{('scores', 'labels')[k]} {dtype} {('n', *dims[:ndim])}")
    return ", ".join(out).replace("'n'", "n")


def _gather_sizes(
    scores: torch.Tensor, labels: torch.Tensor, group: dist.ProcessGroup | None
) -> list[int]:
    """Every rank's batch size; first, every rank's dtypes and trailing shapes, which must
    agree: ranks with int64 and int32 labels made gloo abort the process (SIGABRT), with no
    Python error naming the tensor or the rank."""
    meta = [scores.shape[0]]
    for t, name in ((scores, "scores"), (labels, "labels")):
        if t.dtype not in _DTYPES or t.dim() - 1 > _MAX_TRAILING:
            raise DSLError(
                f"gather_batch: {name} of dtype {t.dtype} and shape {tuple(t.shape)} cannot be "
                f"gathered; use a real or integer dtype and at most {_MAX_TRAILING} trailing "
                "dimensions"
            )
        trailing = list(t.shape[1:]) + [0] * (_MAX_TRAILING - t.dim() + 1)
        meta += [_DTYPES.index(t.dtype), t.dim() - 1, *trailing]
    local = torch.tensor(meta, dtype=torch.int64, device=scores.device)
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, local, group=group)
    rows = [p.tolist() for p in parts]
    differ = [r for r, row in enumerate(rows) if row[1:] != rows[0][1:]]
    if differ:
        raise DSLError(
            f"gather_batch: every rank must send scores and labels of one dtype and trailing "
            f"shape, but rank 0 has {_describe_meta(rows[0])} and rank {differ[0]} has "
            f"{_describe_meta(rows[differ[0]])}; convert them alike on every rank (e.g. "
            "labels.long(), scores.float())"
        )
    return [row[0] for row in rows]


def gather_batch(
    scores: torch.Tensor, labels: torch.Tensor, group: dist.ProcessGroup | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch: scores and labels of all ranks, concatenated in rank order.

    Outside a distributed run (or with one process) the inputs are returned unchanged. The
    local slice of the returned scores is the local ``scores`` tensor itself, so gradients
    reach this rank's network; the other ranks' slices carry no gradient.

    Args:
        scores: ``(n_local, ...)`` this rank's outputs; ``n_local`` may differ across ranks
            (even be 0), the trailing shape may not.
        labels: ``(n_local, ...)`` this rank's labels (a real or integer dtype, or bool, sent
            as uint8). Every rank's scores and labels must have one dtype and trailing shape.
        group: The process group (default: the world).

    Returns:
        ``(global_scores, global_labels)``, each ``(sum of n_local, ...)``.

    Raises:
        DSLError: If ``scores`` and ``labels`` disagree on the batch size, or ranks on their
            dtypes or trailing shapes (gloo aborted the process).
    """
    if scores.dim() == 0 or labels.dim() == 0:
        raise DSLError(
            f"gather_batch: scores {tuple(scores.shape)} and labels {tuple(labels.shape)} "
            "need a first (batch) dimension"
        )
    if scores.shape[0] != labels.shape[0]:
        raise DSLError(
            f"gather_batch: scores {tuple(scores.shape)} and labels {tuple(labels.shape)} "
            "must have the same first (batch) dimension"
        )
    if not _is_distributed(group):
        return scores, labels
    rank = dist.get_rank(group)
    is_bool = labels.dtype == torch.bool
    sent = labels.to(torch.uint8) if is_bool else labels
    sizes = _gather_sizes(scores, sent, group)

    score_parts = _all_gather_padded(scores, sizes, group)
    score_parts[rank] = scores  # differentiable: the gradient flows into the local part
    label_parts = _all_gather_padded(sent.to(scores.device), sizes, group)
    global_labels = torch.cat(label_parts)
    if is_bool:
        global_labels = global_labels.bool()
    return torch.cat(score_parts), global_labels.to(labels.device)


class GlobalBatchLoss(nn.Module):
    """Apply a ``loss(scores, labels)`` module to the batch gathered from all ranks.

    Every rank computes the same value, the loss of the global batch. The gradient that
    reaches each rank's network is that of its own slice. DistributedDataParallel then
    *averages* the parameter gradients over the ranks, which would divide the global loss's
    gradient by the world size; with ``ddp_average=True`` (the default) the gradient is scaled
    up by the world size to cancel that, so DDP's averaged gradient is exactly the gradient
    of the global-batch loss a single process would compute. The returned value is not
    scaled. Pass ``ddp_average=False`` when gradients are summed instead of averaged.

    Args:
        loss: The wrapped loss, e.g. ``lpdsl.metrics.AUCLoss()``.
        group: The process group (default: the world).
        ddp_average: Undo DDP's gradient averaging (see above).
    """

    def __init__(
        self, loss: nn.Module, group: dist.ProcessGroup | None = None, ddp_average: bool = True
    ) -> None:
        super().__init__()
        if isinstance(loss, type) or not callable(loss):
            # the class for an instance failed at the first call with a TypeError about
            # __init__'s arguments (a reviewing helper)
            what = loss.__name__ if isinstance(loss, type) else type(loss).__name__
            raise DSLError(
                f"GlobalBatchLoss: loss must be a loss module called as loss(scores, labels), "
                f"got {what}" + (f"; pass an instance, {what}()" if isinstance(loss, type) else "")
            )
        self.loss = loss
        self.group = group
        self.ddp_average = ddp_average

    # (not torch.compiler.disable'd as the losses are: under it, 4 of 6 runs of the 2-process
    # gloo test hung in a collective; the loss it wraps runs eagerly anyway)
    def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The wrapped loss on the global batch; its gradient flows to the local ``scores``."""
        all_scores, all_labels = gather_batch(scores, labels, self.group)
        value = self.loss(all_scores, all_labels)
        if self.ddp_average and _is_distributed(self.group):
            world = dist.get_world_size(self.group)
            # Same value, gradient multiplied by the world size.
            value = value + (world - 1) * (value - value.detach())
        return value
