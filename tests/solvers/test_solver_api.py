"""Input validation messages, Solution fields, warm starts."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from families import random_lp

import lpdsl
from lpdsl import DSLError, SparseMatrix, Status


@pytest.fixture
def lp(gen):
    return random_lp(20, 4, (), generator=gen)


def test_solution_fields(lp):
    A, b, c = lp
    sol = lpdsl.solve(A, b, c)
    assert isinstance(sol, lpdsl.Solution)
    assert sol.x.shape == (4,) and sol.dual.shape == (20,) and sol.value.shape == ()
    assert sol.status.dtype == torch.int64 and sol.iterations.dtype == torch.int64
    assert Status(int(sol.status)) is Status.OPTIMAL and bool(sol.optimal)
    assert int(sol.iterations) > 0 and float(sol.eps) > 0


def test_results_are_ordinary_tensors(gen):
    # the iterations run in inference mode; nothing made there may reach the caller or autograd
    # (inference tensors cannot be changed in place or saved for backward)
    A, b, c = random_lp(30, 5, (3,), generator=gen)
    b = b.clone().requires_grad_()
    sol = lpdsl.solve(A, b, c)
    for name in ("x", "dual", "value", "status", "iterations", "y", "eps"):
        t = getattr(sol, name)
        assert not t.is_inference(), name
        t.detach().mul_(1)  # in place: refused on an inference tensor
    again = lpdsl.solve(A, b, c, warm_start=sol)
    (again.value.sum() + (again.y * again.x).sum()).backward()
    assert b.grad is not None and torch.isfinite(b.grad).all()


def test_torch_func_grad_matches_autograd(gen):
    # torch.func transforms wrap tensors, which inference mode refuses: the iterations fall back
    # to no_grad there ("Cannot set version_counter for inference tensor" otherwise)
    A, b, c = random_lp(30, 5, (), generator=gen)

    def value(bb):
        return lpdsl.solve(A, bb, c).value

    got = torch.func.grad(value)(b)
    bb = b.clone().requires_grad_()
    value(bb).backward()
    assert torch.allclose(got, bb.grad, rtol=0, atol=1e-12)


def test_pattern_data_is_built_outside_inference_mode():
    # cached index data outlives the solve that builds it and may be saved for backward
    from lpdsl.solvers import linalg

    pattern = lpdsl.Pattern(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 0]), (3, 2))
    with torch.inference_mode():
        info = linalg._analyse(pattern)
    assert info.k1 is not None and not info.k1.is_inference()


@pytest.mark.parametrize("shared", [False, True])
def test_empty_batch(lp, shared):
    # a batch of no items (an empty minibatch) solves to empty results, also with gradients
    A, b, c = lp
    A = A.clone().requires_grad_() if shared else A.expand(0, 20, 4).clone().requires_grad_()
    sol = lpdsl.solve(A, b.expand(0, 20), c.expand(0, 4))
    assert sol.x.shape == (0, 4) and sol.dual.shape == (0, 20) and sol.value.shape == (0,)
    assert sol.status.shape == (0,) and sol.iterations.shape == (0,) and sol.y.shape == (0, 4)
    sol.value.sum().backward()
    assert A.grad is not None and A.grad.shape == A.shape
    # the same with a SparseMatrix (reshape(0, -1) of its values raised)
    S = SparseMatrix.from_dense(A.detach() if shared else lp[0])
    values = S.values if shared else S.values.expand(0, -1)
    sol = lpdsl.solve(SparseMatrix(S.pattern, values), b.expand(0, 20), c.expand(0, 4))
    assert sol.x.shape == (0, 4) and sol.status.shape == (0,)


def test_shape_mismatch_names_arguments_and_shapes(lp):
    A, b, c = lp
    with pytest.raises(DSLError, match=r"A has shape \(20, 4\).*b must end in 20.*got b \(19,\)"):
        lpdsl.solve(A, b[:19], c)
    with pytest.raises(DSLError, match=r"c in 4; got b \(20,\), c \(5,\)"):
        lpdsl.solve(A, b, torch.zeros(5, dtype=torch.float64))


def test_batch_shapes_that_do_not_broadcast(lp):
    A, b, c = lp
    with pytest.raises(
        DSLError, match=r"batch shapes do not broadcast: A \(\), b \(2,\), c \(3,\)"
    ):
        lpdsl.solve(A, b.expand(2, 20), c.expand(3, 4))


def test_non_finite_data(lp):
    A, b, c = lp
    b = b.clone()
    b[3] = float("nan")
    with pytest.raises(DSLError, match=r"argument b of shape \(20,\) has 1 non-finite"):
        lpdsl.solve(A, b, c)


def test_meta_tensors_are_refused():
    # "Tensor.item() cannot be called on meta tensors" came from the finiteness test
    from lpdsl.metrics import AUCLoss

    A, b = torch.eye(2, device="meta"), torch.ones(2, device="meta")
    with pytest.raises(DSLError, match=r"argument A is a meta tensor \(shape \(2, 2\)\).*no data"):
        lpdsl.solve(A, b, b)
    with pytest.raises(DSLError, match=r"`scores` is a meta tensor"):
        AUCLoss()(torch.zeros(4, device="meta"), torch.tensor([1, 0, 1, 0]))
    x, p = lpdsl.Variable(2, name="x"), lpdsl.Parameter(2, name="p")
    compiled = lpdsl.Problem(lpdsl.Minimize(p @ x), [x >= 0, x <= 1]).compile()
    with pytest.raises(DSLError, match=r"parameter 'p' is a meta tensor"):
        compiled.standard_form(b)


def test_boolean_data_count_as_integers():
    # a boolean A failed inside torch ("abs_cpu" not implemented for 'Bool'); integers worked
    A = torch.tensor([[True, False], [False, True]])
    b, c = torch.ones(2), -torch.ones(2)
    ints = lpdsl.solve(A.long(), b, c)
    for args in ((A, b, c), (A.long(), b.bool(), c)):
        sol = lpdsl.solve(*args)
        assert int(sol.status) == Status.OPTIMAL and torch.equal(sol.x, ints.x)
    # the wide unsigned integers raised "abs_cpu" not implemented for 'UInt16', numpy's long
    # double "must be a tensor or array" (a reviewing helper's probe)
    for A_u in (A.to(torch.uint16), A.to(torch.uint32), A.long().to(torch.uint64)):
        sol = lpdsl.solve(A_u, b, c)
        assert sol.x.dtype == torch.float32 and torch.equal(sol.x, ints.x)  # b, c float32
    sol = lpdsl.solve(np.eye(2, dtype=np.longdouble), b.double(), c.double())
    assert torch.equal(sol.x, ints.x.double())
    # a SparseMatrix of booleans raised the same raw error (eighteenth pass)
    pattern = lpdsl.Pattern(torch.tensor([0, 1]), torch.tensor([0, 1]), (2, 2))
    for values in (torch.tensor([True, True]), torch.tensor([1, 1], dtype=torch.uint16)):
        sol = lpdsl.solve(SparseMatrix(pattern, values), b, c)
        assert torch.equal(sol.x, ints.x)


def test_the_solution_dtype_follows_a_layers_rule():
    """Integer tensors gave float32 (torch's default) here and float64 through a layer, numpy
    float32 arrays float32 here and float64 there (a reviewing helper, 22nd pass): one rule
    now, that of lpdsl.values.bind. Tensors' floating dtypes promote; numpy arrays, lists and
    numbers do not; float64 where no tensor is floating."""
    A, b, c = [[1, 0], [0, 1], [-1, -1]], [1, 1, 1], [1, 1]
    x = lpdsl.Variable(2, name="x")
    Ap, bp, cp = (lpdsl.Parameter(s, name=k) for s, k in (((3, 2), "A"), (3, "b"), (2, "c")))
    layer = lpdsl.LPLayer(lpdsl.Problem(lpdsl.Minimize(cp @ x), [Ap @ x <= bp]))
    for args, dtype in [
        ((torch.tensor(A), torch.tensor(b), torch.tensor(c)), torch.float64),
        ((A, b, c), torch.float64),
        (tuple(np.array(v, np.float32) for v in (A, b, c)), torch.float64),
        ((torch.tensor(A), b, torch.tensor(c, dtype=torch.float32)), torch.float32),
        ((np.array(A), torch.tensor(b, dtype=torch.float16), c), torch.float16),
    ]:
        assert lpdsl.solve(*args).x.dtype == dtype
        assert layer(*args)[0].dtype == dtype


def test_complex_data_is_rejected(lp):
    # it used to be cast to real with a warning, and solved as another LP
    A, b, c = lp
    with pytest.raises(DSLError, match=r"argument A is complex .*A\.real"):
        lpdsl.solve(A.to(torch.complex128), b, c)


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("backward", ["active", "unroll"])
def test_outputs_stay_attached_where_their_derivative_is_zero(lp, backward):
    # costs from a network, a loss on x: dx/dc = 0 at a vertex, and x had no grad_fn, so
    # backward() raised torch's "element 0 of tensors does not require grad" (the dual
    # likewise where b alone is live); LPLayer had its own fix, solve() had none
    A, b, c = lp
    c = c.clone().requires_grad_()
    sol = lpdsl.solve(A, b, c, backward=backward)
    ((sol.x - 1.0) ** 2).sum().backward()
    assert c.grad is not None and torch.isfinite(c.grad).all()
    if backward == "active":
        assert bool((c.grad == 0).all())
    bb = b.clone().requires_grad_()
    sol = lpdsl.solve(A, bb, c.detach(), backward=backward)
    sol.dual.sum().backward()
    assert bb.grad is not None and torch.isfinite(bb.grad).all()


def test_torch_sparse_data(lp):
    # torch's NotImplementedError (aten::amax for SparseCPU) came from inside lpdsl
    from lpdsl.metrics import AUCLoss, FBetaLoss

    A, b, c = lp
    A = A.clone()
    A[A.abs() < 0.5] = 0.0
    dense = lpdsl.solve(A, b, c)
    leaf = A.to_sparse().requires_grad_()
    for sparse_A in (leaf, A.to_sparse_csr()):
        sol = lpdsl.solve(sparse_A, b, c)  # a 2-D sparse A is the SparseMatrix it means
        assert int(sol.status) == Status.OPTIMAL
        torch.testing.assert_close(sol.x, dense.x)
    sol = lpdsl.solve(leaf, b, c)
    sol.value.backward()
    grad = torch.autograd.grad(lpdsl.solve(A.requires_grad_(), b, c).value, A)[0]
    torch.testing.assert_close(leaf.grad.to_dense(), grad * (A != 0))
    csc = A.detach().to_sparse_csc().requires_grad_()  # "do not have is_contiguous" in backward
    with pytest.raises(DSLError, match=r"sparse_csc tensor that requires grad; .*to_sparse_coo"):
        lpdsl.solve(csc, b, c)
    with pytest.raises(DSLError, match=r"hybrid sparse tensor .*1 sparse and 1 dense"):
        lpdsl.solve(A.detach().to_sparse(1), b, c)  # a bare "not enough values to unpack"
    boolean = torch.tensor([[True, False], [False, True]]).to_sparse()  # abs_cpu for 'Bool'
    ones = torch.ones(2, dtype=torch.float64)
    assert int(lpdsl.solve(boolean, ones, -ones).status) == Status.OPTIMAL
    with pytest.raises(DSLError, match=r"argument A is a batched sparse tensor .*SparseMatrix"):
        lpdsl.solve(torch.stack([A.detach(), A.detach()]).to_sparse(), b, c)
    with pytest.raises(DSLError, match=r"argument b is a sparse tensor .*to_dense\(\)"):
        lpdsl.solve(A.detach(), b.to_sparse(), c)
    scores, labels = torch.tensor([0.5, -1.0, 0.0, 2.0]), torch.tensor([1, 0, 0, 1])
    for loss in (AUCLoss(), FBetaLoss()):
        with pytest.raises(DSLError, match=r"`scores` is a sparse tensor"):
            loss(scores.to_sparse(), labels)
        with pytest.raises(DSLError, match=r"`labels` is a sparse tensor"):
            loss(scores, labels.to_sparse())


def test_pattern_and_sparse_matrix_validation():
    # The solver's products rely on the row-major order: out of order, the rows came out
    # permuted and the LP below was certified OPTIMAL at -11 (its optimum is -7).
    with pytest.raises(DSLError, match=r"sorted row-major .*\(row 0, col 1\) does not come"):
        lpdsl.Pattern(torch.tensor([1, 0]), torch.tensor([0, 1]), (2, 2))
    with pytest.raises(DSLError, match="unique and sorted"):
        lpdsl.Pattern(torch.tensor([0, 0]), torch.tensor([1, 1]), (2, 2))
    with pytest.raises(DSLError, match=r"\(row 5, col 0\) lies outside the shape \(2, 2\)"):
        lpdsl.Pattern(torch.tensor([0, 5]), torch.tensor([1, 0]), (2, 2))
    with pytest.raises(DSLError, match="cols must be a 1-D int64 tensor"):
        lpdsl.Pattern(torch.tensor([0, 1]), torch.tensor([0, 1], dtype=torch.int32), (2, 2))
    with pytest.raises(DSLError, match="2 rows and 1 cols"):
        lpdsl.Pattern(torch.tensor([0, 1]), torch.tensor([0]), (2, 2))
    pattern = lpdsl.Pattern(torch.tensor([0, 1]), torch.tensor([1, 0]), (2, 2))
    with pytest.raises(DSLError, match=r"nnz = 2 .*got shape \(3,\)"):
        lpdsl.SparseMatrix(pattern, torch.ones(3))
    A = lpdsl.SparseMatrix(pattern, torch.ones(2, dtype=torch.float64))
    sol = lpdsl.solve(A, torch.tensor([1.0, 5.0]).double(), torch.tensor([-1.0, -2.0]).double())
    assert float(sol.value) == pytest.approx(-7.0)
    # silent before: extra entries of x were dropped, a 3x3 A was read on a 2x2 pattern; the
    # other calls raised errors from deep inside (AttributeError, unpacking, reshape)
    with pytest.raises(DSLError, match=r"matvec: expected a tensor of shape \(\*B, 2\)"):
        A.matvec(torch.ones(3, dtype=torch.float64))
    with pytest.raises(DSLError, match=r"rmatvec: expected .* got shape \(5,\)"):
        A.rmatvec(torch.ones(5, dtype=torch.float64))
    with pytest.raises(DSLError, match=r"A has shape \(3, 3\) but the pattern is \(2, 2\)"):
        lpdsl.SparseMatrix.from_dense(torch.eye(3), pattern)
    with pytest.raises(DSLError, match=r"got ndarray; convert it with torch\.as_tensor"):
        lpdsl.SparseMatrix.from_dense(np.eye(2))
    with pytest.raises(DSLError, match="pattern must be a Pattern, got NoneType"):
        lpdsl.SparseMatrix(None, torch.ones(2))
    assert lpdsl.SparseMatrix.from_dense(torch.ones(0, 3)).shape == (0, 3)


@pytest.mark.parametrize("batch", [(), (3,)])
def test_lp_without_variables(batch):
    # A (m, 0): the LP is the system 0 <= b (it used to crash in a reduction over no columns)
    b = torch.tensor([[1.0, 0.0, 2.0], [1.0, -0.5, -2.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    b = b[: batch[0]] if batch else b[1]
    b.requires_grad_(True)
    sol = lpdsl.solve(torch.zeros(3, 0, dtype=torch.float64), b, torch.zeros(0).double())
    want = [Status.OPTIMAL, Status.INFEASIBLE, Status.OPTIMAL] if batch else [Status.INFEASIBLE]
    assert sol.status.reshape(-1).tolist() == [int(s) for s in want]
    assert sol.x.shape == (*batch, 0)
    ray = sol.dual.reshape(-1, 3)[1 if batch else 0]
    assert ray.tolist() == [0.0, 0.0, 1.0]  # a ray: A^T e = 0, b.e = -2 < 0
    value = sol.value.reshape(-1)
    assert value[1 if batch else 0] == float("inf")
    if batch:
        assert value[0] == 0.0 and value[2] == 0.0
        value[0].backward()
        assert b.grad is not None and not b.grad.any()  # d value/db = -dual = 0


def test_bad_options(lp):
    A, b, c = lp
    with pytest.raises(DSLError, match=r"backward must be 'active' or 'unroll', got 'implicit'"):
        lpdsl.solve(A, b, c, backward="implicit")
    with pytest.raises(DSLError, match=r"`max_iter` of solve\(\) to be an integer >= 1 but got 0"):
        lpdsl.solve(A, b, c, max_iter=0)
    with pytest.raises(
        DSLError, match=r"`tol` of solve\(\) to be a finite positive float but got -1"
    ):
        lpdsl.solve(A, b, c, tol=-1)
    # these used to pass the check: eps = inf ended MAX_ITER with NaN x and value, rho = inf
    # MAX_ITER at x = 0, and max_iter=True crashed in the driver
    for name, value in (("eps", math.inf), ("rho", math.inf), ("tol", math.nan)):
        with pytest.raises(DSLError, match=rf"`{name}` of solve\(\) to be a finite positive"):
            lpdsl.solve(A, b, c, **{name: value})
    with pytest.raises(
        DSLError, match=r"`max_iter` of solve\(\) to be an integer >= 1 but got True"
    ):
        lpdsl.solve(A, b, c, max_iter=True)
    # squares of entries this large overflow: rows vanished (UNBOUNDED), costs read as 0
    with pytest.raises(DSLError, match=r"A holds entries up to 1e\+155; .* overflow"):
        lpdsl.solve(A * (1e155 / A.abs().max()), b, c)
    with pytest.raises(DSLError, match=r"c holds entries up to .* or compute in float64"):
        lpdsl.solve(A, b, c * 1e40, compute_dtype=torch.float32)
    # all subnormal: a cost of 1e-309 ended MAX_ITER on a box, a row 1e-309 x <= 1e-309
    # crashed Cholesky or, beside x_2 <= 1, made min -x_1 - x_2 UNBOUNDED (probing helpers)
    with pytest.raises(DSLError, match=r"c \(flattened batch item 0\) has entries all below"):
        lpdsl.solve(A, b, c * (1e-309 / c.abs().max()))
    sub = A.clone()
    sub[3] *= 1e-309 / sub[3].abs().max()
    with pytest.raises(DSLError, match=r"row 3 of A \(flattened batch item 0\) has entries"):
        lpdsl.solve(sub, b, c)
    with pytest.raises(DSLError, match=r"row 0 of A .* below torch.float32's normal range"):
        lpdsl.solve(A * (1e-39 / A.abs().max()), b, c, compute_dtype=torch.float32)
    # below float32's range, from float64 data: the row vanished in float32 arithmetic and an
    # infeasible LP (x_0 <= -1 beside 0 <= x_0) came back OPTIMAL (a verifying helper)
    unit = torch.tensor([[1.0, 0], [0, 1], [-1, 0], [0, -1], [1e-50, 0]], dtype=torch.float64)
    ub = torch.tensor([1.0, 1, 0, 0, -1e-50], dtype=torch.float64)
    assert int(lpdsl.solve(unit, ub, -torch.ones(2, dtype=torch.float64)).status) == 1
    with pytest.raises(DSLError, match=r"row 4 of A .* or vanish: compute in float64"):
        lpdsl.solve(unit, ub, -torch.ones(2, dtype=torch.float64), compute_dtype=torch.float32)
    # a b_i below float32's normal range keeps few bits there: 1e-30 x <= 1e-45 came out at
    # 1.4e-15 for 1e-15 (a verifying helper); in the normal range row scaling keeps it exact
    tiny_row = torch.tensor([[1e-30], [-1.0]], dtype=torch.float64)
    cost = torch.tensor([-1.0], dtype=torch.float64)
    with pytest.raises(DSLError, match=r"b \(flattened batch item 0\) has its entry 0 below"):
        lpdsl.solve(
            tiny_row,
            torch.tensor([1e-45, 0.0], dtype=torch.float64),
            cost,
            compute_dtype=torch.float32,
        )
    sol = lpdsl.solve(
        tiny_row, torch.tensor([1e-37, 0.0], dtype=torch.float64), cost, compute_dtype=torch.float32
    )
    assert int(sol.status) == 0 and float(sol.x) == pytest.approx(1e-7, rel=1e-5)
    # and where all of it vanishes: the box 0 <= x <= 1e-50 came out at x = 0
    with pytest.raises(DSLError, match=r"b \(flattened batch item 0\) has its entry 0 below"):
        lpdsl.solve(
            unit[:4],
            1e-50 * ub[:4].abs(),
            -torch.ones(2, dtype=torch.float64),
            compute_dtype=torch.float32,
        )
    box = torch.tensor([[1e-309, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    with pytest.raises(DSLError, match=r"multiply row 0 of A and b by a common factor"):
        lpdsl.solve(box, torch.tensor([1e-309, 1, 1, 1]), -torch.ones(2, dtype=torch.float64))
    with pytest.raises(DSLError, match=r"A must have shape \(\*B, m, n\), got \(20,\)"):
        lpdsl.solve(b, b, c)
    # below the continuation's smallest eps the next stage is the eps = 0 feasibility stage:
    # it ended MAX_ITER after one stage
    with pytest.raises(DSLError, match=r"eps=1e-15 is below 1e-11"):
        lpdsl.solve(A, b, c, eps=1e-15)
    assert int(lpdsl.solve(A, b, c, eps=1e-6).status) == Status.OPTIMAL


def test_warm_start_validation(lp):
    A, b, c = lp
    with pytest.raises(DSLError, match=r"warm_start must be a Solution.*got dict"):
        lpdsl.solve(A, b, c, warm_start={})
    other = lpdsl.solve(A, b.expand(2, 20), c)
    with pytest.raises(DSLError, match=r"y of shape \(2, 4\) but this problem needs \(4,\)"):
        lpdsl.solve(A, b, c, warm_start=other)
    stitched = dataclasses.replace(lpdsl.solve(A, b, c), eps=torch.full((3,), 1e-3))
    with pytest.raises(DSLError, match=r"warm_start has eps of shape \(3,\) but this problem"):
        lpdsl.solve(A, b, c, warm_start=stitched)  # a reshape error came from inside


def test_warm_start_from_unrelated_data_keeps_the_cold_budget(gen):
    """The warm stage's iterations were charged to max_iter, so an LP that a cold solve
    certifies within max_iter ended MAX_ITER when warm-started from unrelated data (LPLayer,
    warm by default, raised SolverError). Its budget now starts afresh when it restarts cold."""
    A0, b0, c0 = random_lp(40, 8, (3,), generator=gen)
    A1, b1, c1 = random_lp(40, 8, (3,), generator=gen)
    cold = lpdsl.solve(A1, b1, c1)
    for budget in (int(cold.iterations.max()), int(cold.iterations.max()) + 3):
        prev = lpdsl.solve(A0, b0, c0)
        warm = lpdsl.solve(A1, b1, c1, warm_start=prev, max_iter=budget)
        assert (warm.status == Status.OPTIMAL).all(), warm.iterations
        torch.testing.assert_close(warm.x, cold.x)
        assert (warm.iterations <= cold.iterations + 10).all()
    w = lpdsl.Variable(8, name="w")
    G, g, q = (
        lpdsl.Parameter((40, 8), name="G"),
        lpdsl.Parameter(40, name="g"),
        lpdsl.Parameter(8, name="q"),
    )
    layer = lpdsl.LPLayer(
        lpdsl.Problem(lpdsl.Minimize(q @ w), [G @ w <= g]), max_iter=int(cold.iterations.max())
    )
    layer(A0, b0, c0)
    (x,) = layer(A1, b1, c1)  # raised SolverError (MAX_ITER) before
    torch.testing.assert_close(x, cold.x)


def test_max_iter_status(gen):
    A, b, c = random_lp(40, 30, (), generator=gen)
    sol = lpdsl.solve(A, b, c, max_iter=2)
    assert sol.status == Status.MAX_ITER and int(sol.iterations) <= 2


def test_warm_start_saves_iterations_on_slowly_changing_data(gen, capsys):
    A, b, c = random_lp(200, 20, (8,), generator=gen)
    cold_total = warm_total = 0
    prev = None
    for step in range(6):
        bt = b + 1e-3 * step * torch.sin(torch.arange(200, dtype=torch.float64))
        cold = lpdsl.solve(A, bt, c)
        warm = lpdsl.solve(A, bt, c, warm_start=prev) if prev is not None else cold
        assert (warm.status == Status.OPTIMAL).all()
        assert torch.allclose(warm.value, cold.value, rtol=1e-10)
        if prev is not None:
            cold_total += int(cold.iterations.sum())
            warm_total += int(warm.iterations.sum())
        prev = warm
    with capsys.disabled():
        print(f"\nwarm start: {warm_total} Newton iterations vs {cold_total} cold (5 steps x 8)")
    assert warm_total < 0.6 * cold_total


def test_a_warm_start_whose_active_set_still_holds_takes_no_newton_step(gen):
    # the previous optimum's active set is tried on the new data first: on 400x40 LPs with b
    # moved by 1e-4 of its size the warm stage needed more than its 10 steps and restarted
    # cold (271 iterations warm against 502 cold over 12 items; a reviewing helper's probe)
    A, b, c = random_lp(400, 40, (8,), generator=gen)
    prev = lpdsl.solve(A, b, c)
    b2 = b + 1e-4 * b.abs().mean() * torch.randn(b.shape, generator=gen, dtype=b.dtype)
    cold = lpdsl.solve(A, b2, c)
    warm = lpdsl.solve(A, b2, c, warm_start=prev)
    assert (warm.status == Status.OPTIMAL).all()
    assert torch.allclose(warm.value, cold.value, rtol=1e-10)
    torch.testing.assert_close(warm.x, cold.x, rtol=0, atol=1e-9)
    same = ((prev.dual > 0) == (cold.dual > 0)).all(-1)  # the optimal active set did not move
    assert bool(same.any())
    assert (warm.iterations[same] == 0).all(), warm.iterations


def test_warm_start_from_unrelated_data_still_solves(gen):
    """A warm start from an unrelated LP costs at most one short stage, never a failure."""
    from families import auc_lp

    prev = None
    for _ in range(6):
        pos = torch.randn(6, generator=gen, dtype=torch.float64)
        neg = torch.randn(10, generator=gen, dtype=torch.float64)
        A, b, c = auc_lp(pos, neg)
        cold = lpdsl.solve(A, b, c)
        warm = lpdsl.solve(A, b, c, warm_start=prev) if prev is not None else cold
        assert warm.status == Status.OPTIMAL
        assert torch.allclose(warm.value, cold.value, rtol=1e-10)
        assert int(warm.iterations) <= int(cold.iterations) + 10
        prev = warm


def test_compute_dtype_must_be_float32_or_float64():
    A, b, c = torch.eye(2), torch.ones(2), torch.ones(2)
    with pytest.raises(DSLError, match=r"compute_dtype must be None, torch.float32 or"):
        lpdsl.solve(A, b, c, compute_dtype=torch.float16)
    with pytest.raises(DSLError, match=r"got 'float32'"):
        lpdsl.solve(A, b, c, compute_dtype="float32")


def test_an_optimum_beyond_the_input_dtype_is_refused():
    # float16 rounded the value -1.2e5 to -inf with status OPTIMAL
    A = torch.tensor([[1.0], [-1.0]], dtype=torch.float16)
    c = torch.tensor([-2.0], dtype=torch.float16)
    b = torch.tensor([6e4, 6e4], dtype=torch.float16)
    with pytest.raises(DSLError, match=r"optimal value reaches 1.2e\+05.* as float32 or float64"):
        lpdsl.solve(A, b, c)
    assert float(lpdsl.solve(A.float(), b.float(), c.float()).value) == -1.2e5
    sol = lpdsl.solve(A, b / 1e3, c)
    assert sol.value.dtype == torch.float16 and float(sol.value) == -120.0


def test_an_item_certified_by_the_warm_try_gets_a_right_unrolled_derivative(gen):
    # certified by the previous active set, an item has run no Newton step on its data: its
    # y is the previous call's, and the 8 unrolled steps from it gave d(w.x)/db 0.40 off
    # (a verifying helper's probe); such items take the active mode's derivative
    from dataclasses import replace

    A, b, c = random_lp(18, 7, (4,), generator=gen)
    cold = lpdsl.solve(A, b, c)
    assert (cold.status == Status.OPTIMAL).all()
    stale = replace(cold, y=cold.y + 0.3 * torch.randn(cold.y.shape, generator=gen, dtype=b.dtype))
    w = torch.randn(cold.x.shape, generator=gen, dtype=b.dtype)
    grads = []
    for warm, mode in ((stale, "unroll"), (None, "active")):
        bb = b.clone().requires_grad_()
        sol = lpdsl.solve(A, bb, c, warm_start=warm, backward=mode)
        if warm is not None:
            assert (sol.iterations == 0).all()
        (w * sol.x).sum().backward()
        grads.append(bb.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-8, atol=1e-9)


def test_warm_starts_of_lps_without_rows_or_with_other_rows_still_solve():
    # a warm start on an LP without constraints raised a raw reshape error (the m == 0 path
    # adds a row the previous dual lacked), as did one from an LP with other rows
    A = torch.zeros(0, 3, dtype=torch.float64)
    b = torch.zeros(0, dtype=torch.float64)
    c = torch.zeros(3, dtype=torch.float64)
    first = lpdsl.solve(A, b, c)
    again = lpdsl.solve(A, b, c, warm_start=first)
    assert int(again.status) == Status.OPTIMAL and again.dual.shape == (0,)
    A1 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    b1 = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    c1 = torch.tensor([-1.0, -2.0], dtype=torch.float64)
    prev = lpdsl.solve(A1, b1, c1)
    sol = lpdsl.solve(A1[:2], b1[:2], c1, warm_start=prev)
    assert int(sol.status) == Status.OPTIMAL and float(sol.value) == pytest.approx(-3.0)


def test_float32_compute_checks_each_broadcast_item_with_its_own_b():
    """``A`` of batch (2, 1) beside ``b`` of batch (1, 2): the check of a ``b`` below float32's
    range paired flattened item i of ``A`` with item i of ``b``, so item (1, 0), refused
    alone, came back 40 % off; batches of ``A`` (3,) and ``b`` (2, 3) raised a raw size
    mismatch (a verifying helper, 25th pass)."""
    f64 = torch.float64

    def rows(a0: float, a1: float) -> torch.Tensor:
        return torch.tensor([[a0, 0], [0, a1], [-1, 0], [0, -1]], dtype=f64)

    A = torch.stack([rows(1.0, 1e-15), rows(1.0, 1e6)]).unsqueeze(1)
    b = torch.tensor([[1e-45, 2e-38, 0, 0], [1e-30, 1, 0, 0]], dtype=f64).unsqueeze(0)
    c = torch.tensor([-1.0, 0.0], dtype=f64)
    with pytest.raises(DSLError, match=r"b \(flattened batch item 2\) has its entry 0 below"):
        lpdsl.solve(A, b, c, compute_dtype=torch.float32)
    b = torch.tensor([[1.0, 1, 0, 0], [2, 2, 0, 0]], dtype=f64).unsqueeze(0)
    want = lpdsl.solve(A[:, 0], b[:, None, 0], c).value
    got = lpdsl.solve(A[:, 0], b[:, None, 0], c, compute_dtype=torch.float32).value
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0)


def test_a_dense_a_made_in_inference_mode_beside_a_learned_b():
    # torch refused to save the inference tensor A for b's backward with its raw error (a
    # verifying helper, 26th pass); a SparseMatrix of the same A worked
    g = torch.Generator().manual_seed(0)
    A0 = torch.randn(30, 6, generator=g, dtype=torch.float64)
    b = (A0 @ torch.randn(6, generator=g, dtype=torch.float64) + 1).requires_grad_()
    c = torch.randn(6, generator=g, dtype=torch.float64)
    with torch.inference_mode():
        A = A0.clone()
    (dense,) = torch.autograd.grad(lpdsl.solve(A, b, c).value, b)
    (sparse,) = torch.autograd.grad(lpdsl.solve(lpdsl.SparseMatrix.from_dense(A), b, c).value, b)
    torch.testing.assert_close(dense, sparse)
