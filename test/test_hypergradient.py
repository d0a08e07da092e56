"""The first-order hypergradient and the dynamic aggregation weights (training/bilevel.py)."""
import pytest
import torch

from training.bilevel import TaskWeights, aggregate, first_order_hypergradient, grads_or_zeros, projection_coefficient


def test_formula_matches_hand_computation():
    upper_alpha = [torch.tensor([1.0, 2.0]), torch.tensor([[0.5]])]
    upper_y = [torch.tensor([3.0, 0.0])]
    lower_alpha = [torch.tensor([0.2, -0.4]), torch.tensor([[1.0]])]
    lower_y = [torch.tensor([1.0, 1.0])]
    h, c = first_order_hypergradient(upper_alpha, upper_y, lower_alpha, lower_y, scale=0.5)
    # c = <(3,0),(1,1)> / <(1,1),(1,1)> = 3/2 ; h = upper - 0.5 * 1.5 * lower
    assert c == pytest.approx(1.5)
    torch.testing.assert_close(h[0], torch.tensor([1.0 - 0.75 * 0.2, 2.0 + 0.75 * 0.4]))
    torch.testing.assert_close(h[1], torch.tensor([[0.5 - 0.75]]))
    assert float(projection_coefficient([torch.zeros(2)], [torch.zeros(2)])) == 0.0  # no division by zero


def _scalar_problem():
    """Lower level f(a, y) = 1/2 h (y - phi(a))^2 (phi nonlinear), upper F(a, y) = (y - 2)^2 + |a|^2 sin-ish."""
    torch.manual_seed(0)
    m = torch.randn(4, dtype=torch.float64)

    def phi(a):
        return torch.tanh(a @ m) + 0.3 * (a**2).sum()

    def lower(a, y):
        return 0.5 * 3.0 * (y - phi(a)) ** 2

    def upper(a, y):
        return (y - 2.0) ** 2 + torch.sin(a).sum() * y + 0.1 * (a**2).sum()

    return phi, lower, upper


@pytest.mark.parametrize("offset", [1e-2, 1e-4])
def test_one_dimensional_lower_level_gives_the_true_hypergradient(offset):
    """For a 1-D lower level the Gauss-Newton projection is exact: h -> dF(a, y*(a))/da as y -> y*."""
    phi, lower, upper = _scalar_problem()
    a = torch.tensor([0.3, -0.2, 0.5, 0.1], dtype=torch.float64, requires_grad=True)
    true = torch.autograd.grad(upper(a, phi(a)), a)[0]  # y*(a) = phi(a) exactly
    y = (phi(a).detach() + offset).requires_grad_(True)  # the lower level is never exactly solved
    upper_alpha, upper_y = torch.autograd.grad(upper(a, y), [a, y])
    lower_alpha, lower_y = torch.autograd.grad(lower(a, y), [a, y])
    h, _ = first_order_hypergradient([upper_alpha], [upper_y], [lower_alpha], [lower_y])
    cosine = torch.nn.functional.cosine_similarity(h[0], true, dim=0)
    assert cosine > 0.999
    # the error is O(offset): it comes only from evaluating dF/dy at y instead of y*
    assert torch.linalg.vector_norm(h[0] - true) <= 10 * offset * torch.linalg.vector_norm(true)
    # ignoring the lower level's response (plain joint training) is measurably wrong here
    assert torch.nn.functional.cosine_similarity(upper_alpha, true, dim=0) < 0.99


def test_multidimensional_error_is_the_documented_bound():
    """In general h - h_IFT = (H_ay H_yy^-1 - g_a g^T/|g|^2) v: the error the Gauss-Newton stand-in makes."""
    torch.manual_seed(3)
    n, d = 12, 3
    x_train, x_val = torch.randn(n, d, dtype=torch.float64), torch.randn(n, d, dtype=torch.float64)
    t_train, t_val = torch.randn(n, dtype=torch.float64), torch.randn(n, dtype=torch.float64)

    def lower(a, y):
        return 0.5 * (((x_train * a) @ y - t_train) ** 2).sum() + 0.05 * (y**2).sum()

    def upper(a, y):
        return 0.5 * (((x_val * a) @ y - t_val) ** 2).sum()

    a = torch.rand(d, dtype=torch.float64).add(0.5).requires_grad_(True)
    y = torch.randn(d, dtype=torch.float64, requires_grad=True)
    upper_alpha, v = torch.autograd.grad(upper(a, y), [a, y])
    lower_alpha, g = torch.autograd.grad(lower(a, y), [a, y])
    h, c = first_order_hypergradient([upper_alpha], [v], [lower_alpha], [g])
    hess = torch.autograd.functional.hessian(lower, (a.detach(), y.detach()))
    ift = upper_alpha - hess[0][1] @ torch.linalg.solve(hess[1][1], v)
    predicted_error = (hess[0][1] @ torch.linalg.solve(hess[1][1], v) - lower_alpha * (g @ v) / (g @ g))
    torch.testing.assert_close(h[0] - ift, predicted_error)
    # and when v lies along g the projection loses nothing of v
    h_par, c_par = first_order_hypergradient([upper_alpha], [2.5 * g], [lower_alpha], [g])
    assert c_par == pytest.approx(2.5)
    torch.testing.assert_close(h_par[0], upper_alpha - 2.5 * lower_alpha)


def test_grads_or_zeros_fills_unreached_parameters():
    p1, p2 = torch.ones(2, requires_grad=True), torch.ones(3, requires_grad=True)
    grads = grads_or_zeros((p1 * 2).sum(), [p1, p2])
    assert grads[0].tolist() == [2.0, 2.0] and grads[1].tolist() == [0.0, 0.0, 0.0]


def test_task_weights_modes():
    hypergrads = [[torch.tensor([3.0, 4.0])], [torch.tensor([0.0, 1.0])]]  # norms 5 and 1
    w = TaskWeights("grad_norm", 2)(hypergrads, [1.0, 1.0])
    torch.testing.assert_close(w, torch.tensor([1 / 6, 5 / 6]))
    torch.testing.assert_close(TaskWeights("equal", 2)(hypergrads, [1.0, 1.0]), torch.tensor([0.5, 0.5]))

    gen = torch.Generator().manual_seed(0)
    random = TaskWeights("random", 2, generator=gen)
    draws = torch.stack([random(hypergrads, [1.0, 1.0]) for _ in range(50)])
    assert torch.allclose(draws.sum(1), torch.full((50,), 0.5))  # 0.5 * softmax
    assert draws[:, 0].std() > 0.05  # they really change step to step

    rate = TaskWeights("loss_rate", 2, temperature=1.0)
    rate(hypergrads, [1.0, 1.0])  # first call: not enough history -> equal
    w = rate(hypergrads, [0.5, 1.0])  # task 0 improved (ratio .5), task 1 stalled (ratio 1)
    expected = torch.softmax(torch.tensor([0.5, 1.0]), 0)
    torch.testing.assert_close(w, expected)
    assert w[1] > w[0]
    with pytest.raises(ValueError, match="aggregation mode"):
        TaskWeights("bogus", 2)


def test_aggregate_weights_each_task():
    h = aggregate([[torch.tensor([1.0]), torch.tensor([2.0])], [torch.tensor([10.0]), torch.tensor([20.0])]], torch.tensor([0.25, 0.75]))
    assert [float(x) for x in h] == [pytest.approx(7.75), pytest.approx(15.5)]
