"""Train with a metric loss on the global batch across processes (DDP on CPU, gloo).

Each of ``--nprocs`` processes takes its share of every global minibatch; GlobalBatchLoss
gathers the scores and labels of all ranks so that the LP sees the whole batch, and
DistributedDataParallel averages the gradients. The result is the model a single process
would train on the same global batches, which ``--compare`` verifies by also training that
single-process model and printing the largest parameter difference.

    python examples/ddp_train.py --loss auc --nprocs 2 --epochs 5 --compare

On GPUs, use the nccl backend and one device per rank (``--backend nccl``); the code is the
same.
"""

from __future__ import annotations

import argparse
import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from lpdsl.data import Dataset, load_dataset, stratified_batches
from lpdsl.distributed import GlobalBatchLoss
from lpdsl.errors import DSLError
from lpdsl.training import (
    LOSSES,
    TrainConfig,
    check_batch_size,
    evaluate,
    make_loss,
    make_model,
    predict,
)


def train(data: Dataset, args: argparse.Namespace, rank: int, world: int) -> nn.Module:
    """The training loop; with ``world == 1`` it is the single-process reference."""
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    model = make_model("auto", data.feature_shape, data.n_classes).double()
    loss = make_loss(args.loss, n_classes=data.n_classes)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
        loss = GlobalBatchLoss(loss)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    x = torch.as_tensor(data.x_train, dtype=torch.float64)
    y = torch.as_tensor(data.y_train)
    rng = np.random.default_rng(args.seed)  # the same batch order on every rank
    for _ in range(args.epochs):
        for batch in stratified_batches(data.y_train, args.batch_size, rng):
            # This rank's share; the gather puts the shares back together in rank order.
            shares = [batch[r::world] for r in range(world)]
            idx = torch.as_tensor(shares[rank] if world > 1 else np.concatenate(shares))
            value = loss(model(x[idx])[:, 0], y[idx])
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
    return model.module if world > 1 else model


def worker(rank: int, world: int, port: int, args: argparse.Namespace) -> None:
    dist.init_process_group(
        args.backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        data = load_dataset(seed=args.seed)
        model = train(data, args, rank, world)
        if rank == 0:
            reference = train(data, args, 0, 1) if args.compare else None
            if reference is not None:  # compare in float64, before the float32 evaluation
                pairs = zip(model.parameters(), reference.parameters(), strict=True)
                gap = max((p - q).abs().max().item() for p, q in pairs)
            cpu = torch.device("cpu")
            scores = predict(model.float(), data.x_test, cpu)
            print(f"DDP, {world} processes, loss {args.loss}: {evaluate(scores, data.y_test)}")
            if reference is not None:
                scores = predict(reference.float(), data.x_test, cpu)
                print(f"single process, same global batches: {evaluate(scores, data.y_test)}")
                print(f"largest parameter difference: {gap:.2e}")
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loss", default="auc", help="a name of lpdsl.training.LOSSES")
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64, help="the global batch size")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="gloo", choices=["gloo", "nccl", "mpi"])
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also train in one process and compare the parameters",
    )
    args = parser.parse_args()
    binary = [name for name, spec in LOSSES.items() if spec.multiclass is not True]
    if args.loss not in binary:  # before spawning: each worker printed its own traceback
        parser.error(
            f"--loss: {args.loss!r} is not a loss of this binary task; choose from "
            f"{', '.join(binary)}"
        )
    for flag in ("nprocs", "epochs", "batch_size"):  # --nprocs 0 printed nothing, exit 0
        if getattr(args, flag) < 1:
            parser.error(
                f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}"
            )
    try:  # lpdsl train's checks (a negative --lr was a traceback from every worker, and a
        # batch of 1 left AUC untrained: a reviewing helper)
        TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
        check_batch_size(args.loss, args.batch_size)
    except DSLError as err:
        parser.error(str(err).replace("batch_size", "--batch-size").replace("`lr`", "--lr"))
    # before spawning: each worker printed a traceback (nccl on a CPU build; a helper)
    if not dist.is_backend_available(args.backend):
        parser.error(f"--backend {args.backend} is not available in this torch build; use gloo")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(args.nprocs, port, args), nprocs=args.nprocs, join=True)


if __name__ == "__main__":
    main()
