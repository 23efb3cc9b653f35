"""GlobalBatchLoss under torch.distributed: 2 CPU processes on the gloo backend.

The loss used is a soft pairwise ranking loss (a smooth 1 - AUC) written in torch: it is
non-decomposable, like the LP losses, so a loss on the local batches differs from the loss on
the global batch, and the test can tell whether the gather really happened.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from lpdsl.distributed import GlobalBatchLoss, gather_batch
from lpdsl.errors import DSLError

WORLD = 2
SIZES = {"unequal": [5, 3], "empty-rank": [6, 0]}


class SoftRankLoss(nn.Module):
    """Mean over positive-negative pairs of sigmoid(-(s_pos - s_neg) / 0.5)."""

    def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pos, neg = scores[labels.bool()], scores[~labels.bool()]
        return torch.sigmoid(-(pos[:, None] - neg[None, :]) / 0.5).mean()


def _global_data(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=gen, dtype=torch.float64)
    scores = torch.randn(n, generator=gen, dtype=torch.float64)
    labels = torch.tensor([1, 0, 0, 1, 0, 1, 0, 0][:n]).bool()
    return x, scores, labels


def _model() -> nn.Module:
    torch.manual_seed(3)
    return nn.Linear(4, 1).double()


def _worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        results = {}
        for case, sizes in SIZES.items():
            x, scores, labels = _global_data(sum(sizes))
            lo = sum(sizes[:rank])
            sl = slice(lo, lo + sizes[rank])
            for ddp_average in (False, True):
                local = scores[sl].clone().requires_grad_(True)
                value = GlobalBatchLoss(SoftRankLoss(), ddp_average=ddp_average)(local, labels[sl])
                value.backward()
                results[(case, ddp_average)] = (value.detach(), local.grad.clone())
            gathered = gather_batch(scores[sl], labels[sl])
            results[(case, "gathered")] = gathered
            # A real DDP step: the averaged parameter gradient must be the single-process one.
            model = nn.parallel.DistributedDataParallel(_model())
            GlobalBatchLoss(SoftRankLoss())(model(x[sl])[:, 0], labels[sl]).backward()
            results[(case, "ddp")] = [p.grad.clone() for p in model.parameters()]
        # ranks with int64 and int32 labels: gloo aborted the process (SIGABRT) before
        try:
            _, scores, labels = _global_data(6)
            sent = labels[3 * rank : 3 * rank + 3].long()
            gather_batch(scores[3 * rank : 3 * rank + 3], sent if rank == 0 else sent.int())
            results["mismatch"] = ""
        except DSLError as err:
            results["mismatch"] = str(err)
        torch.save(results, Path(out) / f"rank{rank}.pt")
        # both ranks done before either tears gloo down: a rank leaving first sometimes died
        # with "terminate called without an active exception" (SIGABRT)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Run the worker on 2 processes once; each rank's results."""
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.mark.parametrize("case", list(SIZES))
def test_gathered_batch_is_the_concatenation(ranks: list[dict], case: str) -> None:
    _, scores, labels = _global_data(sum(SIZES[case]))
    for r in range(WORLD):
        g_scores, g_labels = ranks[r][(case, "gathered")]
        assert torch.equal(g_scores, scores)
        assert g_labels.dtype == torch.bool
        assert torch.equal(g_labels, labels)


@pytest.mark.parametrize("case", list(SIZES))
def test_global_loss_and_local_gradients_match_single_process(ranks: list[dict], case: str) -> None:
    sizes = SIZES[case]
    _, scores, labels = _global_data(sum(sizes))
    full = scores.clone().requires_grad_(True)
    expected = SoftRankLoss()(full, labels)
    expected.backward()
    local_losses = []
    for r in range(WORLD):
        lo = sum(sizes[:r])
        sl = slice(lo, lo + sizes[r])
        value, grad = ranks[r][(case, False)]
        torch.testing.assert_close(value, expected.detach())
        torch.testing.assert_close(grad, full.grad[sl])
        value_avg, grad_avg = ranks[r][(case, True)]
        torch.testing.assert_close(value_avg, expected.detach())  # value not scaled
        torch.testing.assert_close(grad_avg, WORLD * full.grad[sl])
        if 0 < sizes[r] < len(scores) and labels[sl].any() and (~labels[sl]).any():
            local_losses.append(SoftRankLoss()(scores[sl], labels[sl]))
    # The check has teeth: a loss on a local batch is not the global loss.
    assert len(local_losses) == (2 if case == "unequal" else 0)
    assert all(not torch.isclose(v, expected) for v in local_losses)


@pytest.mark.parametrize("case", list(SIZES))
def test_ddp_parameter_gradients_equal_single_process(ranks: list[dict], case: str) -> None:
    x, _, labels = _global_data(sum(SIZES[case]))
    model = _model()
    SoftRankLoss()(model(x)[:, 0], labels).backward()
    for r in range(WORLD):
        for got, want in zip(ranks[r][(case, "ddp")], model.parameters(), strict=True):
            torch.testing.assert_close(got, want.grad)


def test_ranks_with_other_dtypes_get_a_dsl_error(ranks: list[dict]) -> None:
    for r in range(WORLD):
        assert "rank 1 has scores float64 (n,), labels int32 (n,)" in ranks[r]["mismatch"]


def test_gather_outside_distributed_is_identity() -> None:
    scores, labels = torch.randn(4), torch.tensor([0, 1, 0, 1])
    out_scores, out_labels = gather_batch(scores, labels)
    assert out_scores is scores and out_labels is labels
    loss = GlobalBatchLoss(SoftRankLoss())
    torch.testing.assert_close(loss(scores, labels), SoftRankLoss()(scores, labels))


def test_gather_rejects_mismatched_batch() -> None:
    with pytest.raises(DSLError, match=r"scores \(4,\) and labels \(3,\)"):
        gather_batch(torch.randn(4), torch.zeros(3))
    with pytest.raises(DSLError, match="need a first \\(batch\\) dimension"):  # IndexError before
        gather_batch(torch.tensor(0.3), torch.tensor(1))


def test_a_loss_class_instead_of_an_instance_is_refused() -> None:
    # GlobalBatchLoss(AUCLoss) was accepted and failed at the first call with a TypeError
    # about __init__'s arguments (a reviewing helper, 22nd pass)
    from lpdsl.metrics import AUCLoss

    with pytest.raises(DSLError, match=r"got AUCLoss; pass an instance, AUCLoss\(\)"):
        GlobalBatchLoss(AUCLoss)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lr", "-1"], "--lr to be a finite positive float"),
        (["--loss", "auc", "--batch-size", "1"], "--batch-size 1 is too small for auc"),
    ],
)
def test_ddp_example_checks_its_flags_before_spawning(flags: list[str], message: str) -> None:
    # a negative --lr was a traceback from every spawned worker, and a batch of 1 left AUC
    # untrained (a reviewing helper, 22nd pass)
    script = Path(__file__).resolve().parents[1] / "examples" / "ddp_train.py"
    run = subprocess.run(
        [sys.executable, str(script), "--epochs", "1", *flags], capture_output=True, text=True
    )
    assert run.returncode == 2 and message in run.stderr, run.stderr
